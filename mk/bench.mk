# Benchmarks (issue 7): grpc-core side by side with tonic, grpc-go, gRPC C++,
# grpcio (sync, aio) and grpc-js, plus raw HTTP/2 and TCP references.
#   make bench        full run, < 20 min: writes bench/RESULTS.md, RESULTS.json, latency.png,
#                     then bench-c, bench-python and bench-node (the bindings vs their incumbents)
#   make bench-quick  CI smoke, < 3 min: ours, tonic, grpc-go, raw h2; writes bench/out/
# Every peer installs itself (crates.io, Go proxy, PyPI, npm, Debian) and can be run again.
CARGO ?= cargo
BENCH_TIMEOUT ?= 1500
BENCH_QUICK_TIMEOUT ?= 240

.PHONY: bench bench-quick bench-build bench-peers

bench-build:
	$(CARGO) build --release -p bench

bench-peers:
	bench/scripts/install-peers.sh

bench: bench-build bench-peers
	BENCH_COMMAND="make bench" timeout --kill-after=10 $(BENCH_TIMEOUT) python3 bench/run.py
	@echo "== the bindings against their incumbents (C ABI vs Rust API, grpc_core vs grpcio, grpc-core vs grpc-js) =="
	$(MAKE) -s bench-c
	$(MAKE) -s bench-python
	$(MAKE) -s bench-node

bench-quick: bench-build
	bench/scripts/install-peers.sh grpc-go
	BENCH_COMMAND="make bench-quick" timeout --kill-after=10 $(BENCH_QUICK_TIMEOUT) python3 bench/run.py --quick
