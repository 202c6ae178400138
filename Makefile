# grpc-core: the two commands are `make demo` and `make test`.
# Every target installs what it needs and can be run again.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo demo-rust test check unit interop test-reflection toolchain clean install

include mk/c.mk
include mk/python.mk
include mk/node.mk
include mk/bench.mk
include mk/uniffi.mk

## The main demo: one Rust greeter server and clients in Rust, C, Python,
## Node and Kotlin talking to it, then Rust over TLS. Builds and installs what it needs.
demo: toolchain python-dev node-deps example-kotlin
	$(CARGO) build --release -q -p examples-rust -p grpc-core-ffi
	$(MAKE) -s -C examples/c OUT=$(CURDIR)/target/c-examples
	cd examples/node && $(NPM) install --no-audit --no-fund --loglevel=error
	examples/demo.sh

## The Rust-only greeter demo (plaintext and TLS).
demo-rust: toolchain
	examples/rust/demo.sh

## Everything: formatting, clippy, unit and behaviour suites, the interop matrix.
test: check unit interop test-reflection test-c test-python test-node test-kotlin

toolchain:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)"; exit 1; }
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

check: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: toolchain
	$(CARGO) test --workspace --release

## Interop with grpc-go and grpc-java (installed from the Go proxy and Maven Central).
interop: toolchain
	tests/interop/scripts/install-peers.sh
	$(CARGO) build --release -p interop
	OUR_SERVER=$(CURDIR)/target/release/interop-server OUR_CLIENT=$(CURDIR)/target/release/interop-client \
		tests/interop/scripts/run-matrix.sh

## grpcurl (go install) lists and calls the Rust greeter through server reflection.
test-reflection: toolchain
	tests/reflection/grpcurl.sh

## Install libgrpc_core.{so,a}, grpc_core.h and grpc_core.pc under PREFIX (default /usr/local).
install: install-c

clean:
	$(CARGO) clean
	rm -rf .peers
