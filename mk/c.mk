# The C ABI: libgrpc_core.{so,a} (ffi-c/), include/grpc_core.h, the C tests
# (ffi-c/tests/) and the C/C++ examples. Included by the root Makefile; the
# work is done by ffi-c/scripts/c.sh (see its header for what test-c runs).

# cbindgen is pinned: `make header-c` and `make test-c` install exactly this
# version into .tools/ (cargo install --locked) when it is missing.
CBINDGEN_VERSION := 0.29.4
C_SH := CBINDGEN_VERSION=$(CBINDGEN_VERSION) CARGO=$(CARGO) ffi-c/scripts/c.sh
PREFIX ?= /usr/local

.PHONY: test-c demo-c header-c install-c bench-c

## C ABI: header current and self-contained, C tests against libgrpc_core.so
## and .a (normal, AddressSanitizer, valgrind), the C interop server against
## the interop clients, the examples (also via pkg-config). Ends with
## 'N passed, M failed'.
test-c: toolchain
	$(C_SH) test

## The C greeter server with the C and C++ clients, and the C client against the Rust server.
demo-c: toolchain
	$(C_SH) demo

## Regenerate include/grpc_core.h with the pinned cbindgen.
header-c: toolchain
	$(C_SH) header

## Install libgrpc_core.{so,a}, grpc_core.h and grpc_core.pc under PREFIX (/usr/local).
install-c: toolchain
	$(C_SH) install $(PREFIX)

## The C ABI's overhead per unary call against the Rust API (ffi-c/bench/run.sh).
bench-c: toolchain
	CARGO=$(CARGO) ffi-c/bench/run.sh
