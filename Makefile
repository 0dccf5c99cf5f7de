# Two commands for a newcomer: `make demo` and `make test`. Each creates the virtual environment
# and installs everything it needs on first use.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CORE_STAMP := $(VENV)/.core-stamp
STAMP := $(VENV)/.installed-stamp
# Development and CI pin this CPU build (pip takes it from local disk on our machines).
TORCH := torch==2.13.0

.PHONY: demo test test-fast lint install clean web-runtime browser
# The onnxruntime-web that `export --format web` copies into its folder (deploy/web.py names the same).
WEB_RUNTIME_VERSION := 1.31.1
WEB_RUNTIME := .web-runtime/node_modules/onnxruntime-web/package.json

install: $(STAMP)

# The core package alone (torch, NumPy, Pillow, safetensors, scikit-learn, matplotlib, tqdm): what
# the demo needs. Every runtime (ONNX Runtime, OpenVINO, ExecuTorch, LiteRT, Triton, Keras) stays an
# extra, which the test target installs.
$(CORE_STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(TORCH)
	$(PYTHON) -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# ONNX Runtime Web for `mobilenets export --format web`, from the npm registry into .web-runtime/.
web-runtime: $(WEB_RUNTIME)
$(WEB_RUNTIME):
	npm install --silent --no-audit --no-fund --prefix .web-runtime onnxruntime-web@$(WEB_RUNTIME_VERSION)

# Chromium and its driver, for the tests that load a web export in a real headless browser (Debian
# packages; needs root). Without them those tests skip and say why.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium >/dev/null)

# The main job: train MobileNetV1 and its full-convolution twin (paper Table 4) with the same recipe
# on the built-in digits, and compare parameters, mult-adds, latency, training time and accuracy.
demo: $(CORE_STAMP)
	rm -rf runs/demo
	$(VENV)/bin/mobilenets compare -o runs/demo

# The ExecuTorch and LiteRT tests run in processes of their own: once their native runtimes (and
# litert-torch's jax) are loaded, a later training test crashed the shared pytest process.
ISOLATED := tests/test_executorch.py tests/test_tflite.py tests/test_runtimes.py
# Two pytest-xdist workers, one intra-op thread each (tests/conftest.py). worksteal gives each worker
# half of the tests in file order and lets an idle one take over half of what the other has left: a
# module's fixtures (a training run, exports) are mostly built by one worker, not both, as with
# --dist load, and neither waits on the other at the end, as with loadfile. (loadgroup would group
# by fixture, but with pytest 9.2 and pytest-xdist 3.8 it groups nothing: pytest-xdist#1386.)
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist worksteal
# The browser tests need ONNX Runtime Web (npm) and Chromium (apt); where either cannot be installed
# those tests skip and say which is missing, and the rest of the suite still runs.
test: $(STAMP)
	-$(MAKE) --no-print-directory web-runtime browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PYTHON) -m pytest $(XDIST) $(addprefix --ignore=,$(ISOLATED))
	$(PYTHON) -m pytest $(XDIST) $(ISOLATED)

# The suite without the tests marked slow and without the isolated runtime tests: for the edit-test loop.
test-fast: $(STAMP)
	MOBILENETS_FAST=1 $(PYTHON) -m pytest -q $(XDIST) $(addprefix --ignore=,$(ISOLATED))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache
