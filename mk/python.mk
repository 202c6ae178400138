# Python binding (issue 4): grpc_core, a drop-in for grpcio (bindings/python).
#   make test-python   builds the extension into .venv-python and runs pytest
#   make demo-python   runs the Python greeter (examples/python) over grpc_core
#   make bench-python  CPU-µs per unary call, grpc_core vs grpcio, in one run
# The venv and its PyPI packages install themselves; run again at will.
PYTHON ?= python3
PY_VENV := $(CURDIR)/.venv-python
PY := $(PY_VENV)/bin/python
PY_STAMP := $(PY_VENV)/.deps-stamp
PY_DEPS := maturin pytest grpcio grpcio-tools protobuf mypy

.PHONY: test-python demo-python bench-python python-dev python-wheel

$(PY_STAMP):
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

test-python: python-dev
	cd bindings/python && $(PY) -m mypy python/grpc_core && $(PY) -m mypy.stubtest grpc_core --allowlist stubtest-allowlist.txt
	cd bindings/python && timeout --kill-after=10 600 $(PY) -m pytest -q -p no:cacheprovider tests

demo-python: python-dev
	timeout --kill-after=5 120 $(PY) examples/python/greeter.py

bench-python: python-dev
	timeout --kill-after=5 300 $(PY) examples/python/bench_unary.py
