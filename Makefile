# vitsrt: `make demo` runs the main job on the default voice, `make test` runs the test suite.
# Both create the virtual environment and install everything from scratch on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# A CPU build of torch; an unpinned `torch` would pull a multi-GB CUDA build. pyproject keeps the range open.
TORCH_VERSION ?= 2.13.0
FIXTURE ?= ../shared/fixtures/bertvits2-2.3-tiny
OUT ?= out

.PHONY: install test lint demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[torch,ipa,dev]"
	touch $@

lint: install
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest -q -m "not slow and not gpu"

demo: install
	$(VENV)/bin/vitsrt info $(FIXTURE)/G_0.pth -c $(FIXTURE)/config.json

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache *.egg-info
