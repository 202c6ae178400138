## Kotlin (JVM) tests of the UniFFI binding, the Kotlin interop client, the
## Kotlin greeter example, plus the Swift bindings' drift check.
##   make test-kotlin      drift check, demo-kotlin, kotlin-tests (Rust and grpc-java servers), interop-kotlin
##   make interop-kotlin   the Kotlin interop client against grpc-go's server (plaintext + TLS)
##   make example-kotlin   builds examples/kotlin (run by `make demo`)
##   make demo-kotlin      runs it against the Rust greeter server
.PHONY: test-kotlin interop-kotlin example-kotlin demo-kotlin gen-uniffi check-swift
UNIFFI_GEN := $(CURDIR)/target/uniffi-gen
UNIFFI_LIB := $(CURDIR)/target/release/libgrpc_core_uniffi.so
KT_TESTS := bindings/uniffi/kotlin-tests
# One JVM per interop case: favour start-up time.
KT_CLIENT_CMD := java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djna.library.path=$(CURDIR)/target/release \
	-cp $(CURDIR)/$(KT_TESTS)/target/classes:$(CURDIR)/$(KT_TESTS)/target/lib/* io.grpccore.interop.InteropClientKt
# The client runs all of grpc-go's client cases (the runner's default list for
# a binding client), so KT_CLIENT_CASES is not set.
KT_MATRIX := EXTRA_CLIENTS=kt KT_CLIENT='$(KT_CLIENT_CMD)' PEERS=kt SKIP_INSTALL=1 \
	INTEROP_LOG_DIR=$(CURDIR)/target/interop-logs-kotlin tests/interop/scripts/run-matrix.sh

gen-uniffi: toolchain
	$(CARGO) build --release -p grpc-core-uniffi -p interop
	rm -rf $(UNIFFI_GEN) $(KT_TESTS)/target/generated
	target/release/uniffi-bindgen generate --library $(UNIFFI_LIB) --language kotlin --language swift \
		--config bindings/uniffi/uniffi.toml --out-dir $(UNIFFI_GEN) --no-format
	mkdir -p $(KT_TESTS)/target/generated/uniffi
	cp -r $(UNIFFI_GEN)/io $(KT_TESTS)/target/generated/uniffi/

## Fails when the committed Swift sources differ from freshly generated ones.
check-swift: gen-uniffi
	diff -u bindings/uniffi/swift/Sources/GrpcCore/GrpcCore.swift $(UNIFFI_GEN)/GrpcCore.swift
	diff -u bindings/uniffi/swift/Sources/GrpcCoreFFI/include/GrpcCoreFFI.h $(UNIFFI_GEN)/GrpcCoreFFI.h

test-kotlin: check-swift demo-kotlin
	tests/interop/scripts/install-peers.sh
	cd $(KT_TESTS) && mvn -B test -Djna.library.path=$(CURDIR)/target/release \
		-Dinterop.certs=$(CURDIR)/.peers/certs | grep -E 'Tests run|FAIL|ERROR|BUILD' ; exit $${PIPESTATUS[0]}
	$(KT_MATRIX)

interop-kotlin: gen-uniffi
	tests/interop/scripts/install-peers.sh
	cd $(KT_TESTS) && mvn -B -q process-classes
	$(KT_MATRIX)

example-kotlin: gen-uniffi
	cd examples/kotlin && mvn -B -q package

demo-kotlin: example-kotlin
	$(CARGO) build --release -q -p examples-rust
	examples/kotlin/demo.sh
