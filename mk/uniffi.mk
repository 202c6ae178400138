## Kotlin (JVM) tests of the UniFFI binding, plus the Swift bindings' drift check.
.PHONY: test-kotlin gen-uniffi check-swift
UNIFFI_GEN := $(CURDIR)/target/uniffi-gen
UNIFFI_LIB := $(CURDIR)/target/release/libgrpc_core_uniffi.so

gen-uniffi: toolchain
	$(CARGO) build --release -p grpc-core-uniffi -p interop
	rm -rf $(UNIFFI_GEN) bindings/uniffi/kotlin-tests/target/generated
	target/release/uniffi-bindgen generate --library $(UNIFFI_LIB) --language kotlin --language swift \
		--config bindings/uniffi/uniffi.toml --out-dir $(UNIFFI_GEN) --no-format
	mkdir -p bindings/uniffi/kotlin-tests/target/generated/uniffi
	cp -r $(UNIFFI_GEN)/io bindings/uniffi/kotlin-tests/target/generated/uniffi/

## Fails when the committed Swift sources differ from freshly generated ones.
check-swift: gen-uniffi
	diff -u bindings/uniffi/swift/Sources/GrpcCore/GrpcCore.swift $(UNIFFI_GEN)/GrpcCore.swift
	diff -u bindings/uniffi/swift/Sources/GrpcCoreFFI/include/GrpcCoreFFI.h $(UNIFFI_GEN)/GrpcCoreFFI.h

test-kotlin: check-swift
	tests/interop/scripts/install-peers.sh
	cd bindings/uniffi/kotlin-tests && mvn -B test -Djna.library.path=$(CURDIR)/target/release \
		-Dinterop.certs=$(CURDIR)/.peers/certs | grep -E 'Tests run|FAIL|ERROR|BUILD' ; exit $${PIPESTATUS[0]}
