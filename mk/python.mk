# Python binding (issue 4): grpc_core, a drop-in for grpcio (bindings/python).
#   make test-python   builds the extension into .venv-python, runs mypy,
#                      stubtest, pytest, then interop-python
#   make interop-python the Python interop client and server (bindings/python/interop),
#                      sync and aio, against grpc-go's, plaintext and TLS, via run-matrix.sh
#   make demo-python   runs the Python greeter (examples/python) over grpc_core
#   make bench-python  CPU-µs per unary call, grpc_core vs grpcio, in one run (client and
#                      server in one process), then per side, unary and streaming, with the
#                      raw-socket floor (bench/python/binding_bench.py)
# The venv and its PyPI packages install themselves; run again at will.
PYTHON ?= python3
PY_VENV := $(CURDIR)/.venv-python
PY := $(PY_VENV)/bin/python
PY_STAMP := $(PY_VENV)/.deps-stamp
PY_DEPS := maturin pytest grpcio grpcio-tools grpcio-reflection grpcio-health-checking protobuf mypy \
	opentelemetry-api==1.39.1 opentelemetry-sdk==1.39.1 uvloop==0.23.0

.PHONY: test-python interop-python demo-python bench-python python-dev python-wheel

# Re-run when this file (and so the list) changes; pip skips what is installed.
$(PY_STAMP): $(CURDIR)/mk/python.mk
	$(PYTHON) -m venv $(PY_VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PY_DEPS)
	touch $@

## Builds the extension in place (editable) into the venv.
python-dev: $(PY_STAMP)
	cd bindings/python && VIRTUAL_ENV=$(PY_VENV) PATH=$(PY_VENV)/bin:$$PATH maturin develop --release -q

## Builds the abi3 wheel into target/wheels.
python-wheel: $(PY_STAMP)
	cd bindings/python && $(PY_VENV)/bin/maturin build --release -q -o $(CURDIR)/target/wheels

# The grpc-go peers and the test certs (tests/interop/scripts/install-peers.sh,
# run only when they are missing); the protos compiled once into
# target/python-interop; then the cells go->py and py->go of the matrix, for
# the sync API (py) and grpc.aio (pyaio, the same scripts with --aio).
PY_INTEROP := $(CURDIR)/bindings/python/interop
define run-interop-python
	[ -x .peers/go/bin/server ] && [ -x .peers/go/bin/client ] && [ -f .peers/certs/ca.pem ] \
		|| tests/interop/scripts/install-peers.sh
	$(PY) $(PY_INTEROP)/_interop.py >/dev/null
	EXTRA_SERVERS='py pyaio' EXTRA_CLIENTS='py pyaio' PEERS='py pyaio' SKIP_INSTALL=1 \
		PY_SERVER='$(PY) $(PY_INTEROP)/server.py' PY_CLIENT='$(PY) $(PY_INTEROP)/client.py' \
		PYAIO_SERVER='$(PY) $(PY_INTEROP)/server.py --aio' PYAIO_CLIENT='$(PY) $(PY_INTEROP)/client.py --aio' \
		INTEROP_LOG_DIR=$(CURDIR)/target/interop-logs-python \
		timeout --kill-after=10 300 tests/interop/scripts/run-matrix.sh
endef

test-python: python-dev
	cd bindings/python && $(PY) -m mypy python/grpc_core && $(PY) -m mypy --ignore-missing-imports interop && $(PY) -m mypy.stubtest grpc_core --allowlist stubtest-allowlist.txt
	cd bindings/python && timeout --kill-after=10 600 $(PY) -m pytest -q -p no:cacheprovider tests
	$(run-interop-python)

interop-python: python-dev
	$(run-interop-python)

demo-python: python-dev
	timeout --kill-after=5 120 $(PY) examples/python/greeter.py

bench-python: python-dev bench-build
	timeout --kill-after=5 300 $(PY) examples/python/bench_unary.py
	timeout --kill-after=5 900 $(PY) bench/python/binding_bench.py --reps 2
