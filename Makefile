# vitsrt: `make demo` runs the main job on the default voice, `make test` runs the test suite.
# Both create the virtual environment and install from the locks in requirements/ on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
FIXTURE ?= ../shared/fixtures/bertvits2-2.3-tiny
OUT ?= out

# Reproducible installs: every package `make demo` and `make test` install comes from a lock with exact versions
# and hashes (requirements/*.lock, written by `make lock` from pyproject's open ranges). torch is pinned to a CPU
# build in requirements/pins.txt: an open `torch` range would resolve a multi-GB CUDA build.
PIP_VERSION ?= 26.3
TEST_LOCK := requirements/test.lock
DEMO_LOCK := requirements/demo.lock
# The extras each install set brings (tests/test_lock.py checks the locks against pyproject with these lists).
TEST_EXTRAS := torch ipa bv2 bert piper train triton bench eval http wyoming formats dev
DEMO_EXTRAS := ipa
# tritonserver (Python backend, runs on CPU) for the Triton tests. --no-deps: its pins (numpy<2, protobuf<7
# through tritonclient[grpc]) conflict with ours, and none of them is needed to run it.
PYTRITON := nvidia-pytriton==0.7.0

.PHONY: install install-demo test test-latest lock lint demo demo-export clean protos corpus debian-deps

install: $(VENV)/.installed-test
install-demo: $(VENV)/.installed-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "pip==$(PIP_VERSION)"

# The lock is complete (every dependency pinned and hashed), so pip installs it with --no-deps; vitsrt itself
# goes in editable, without build isolation (its build backend, setuptools, is in the lock too).
$(VENV)/.installed-test: $(TEST_LOCK) pyproject.toml Makefile | $(VENV)/bin/python
	$(PIP) install -q --require-hashes --no-deps -r $(TEST_LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) install -q --no-deps "$(PYTRITON)"
	touch $@ $(VENV)/.installed-demo

$(VENV)/.installed-demo: $(DEMO_LOCK) pyproject.toml Makefile | $(VENV)/bin/python
	$(PIP) install -q --require-hashes --no-deps -r $(DEMO_LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve both locks from pyproject's ranges (latest versions that satisfy them), then check them. The demo
# lock is resolved inside the test lock's versions, so one virtual environment can hold both sets.
LOCK_TOOLS := $(OUT)/lock-tools
COMPILE := $(LOCK_TOOLS)/bin/pip-compile -q --strip-extras --allow-unsafe --generate-hashes --no-emit-index-url \
	--no-emit-find-links --no-header -c requirements/pins.txt
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install -q "pip==$(PIP_VERSION)" "pip-tools==7.6.2"
	$(COMPILE) $(TEST_EXTRAS:%=--extra %) -o $(TEST_LOCK).new pyproject.toml requirements/build.in
	$(PYTHON) requirements/finish_lock.py $(TEST_LOCK).new $(TEST_LOCK)
	$(COMPILE) -c $(TEST_LOCK) $(DEMO_EXTRAS:%=--extra %) -o $(DEMO_LOCK).new pyproject.toml requirements/build.in
	$(PYTHON) requirements/finish_lock.py $(DEMO_LOCK).new $(DEMO_LOCK)
	@echo "locks written; run make test to install and check them"

# Drift check (not in CI): the suite on the newest versions pyproject allows, in a separate environment.
LATEST_VENV ?= .venv-latest
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q -c requirements/pins.txt -e ".[$(shell echo $(TEST_EXTRAS) | tr ' ' ,)]"
	$(LATEST_VENV)/bin/pip install -q --no-deps "$(PYTRITON)"
	$(LATEST_VENV)/bin/python -m pytest -q -m "not slow and not gpu" --deselect tests/test_lock.py

lint: install
	$(PY) -m ruff check .
	$(PY) tools/lint_imports.py

# Debian *main* packages: flite for the default voice's corpus (CMU Flite voices slt, rms, awb, kal16 and the
# public-domain Alice text), chromium for the web page test (headless). Needs root; elsewhere the tests that
# need them skip with a reason.
DEBIAN_PACKAGES ?= flite chromium
debian-deps:
	@if command -v flite >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	else echo "debian-deps: no flite/chromium and no root apt-get: the corpus and web page tests will skip"; fi

# The default voice's corpus (recipes/default-voice/README.md): CORPUS_HOURS of flite speech + metadata.csv.
CORPUS ?= $(OUT)/corpus
CORPUS_HOURS ?= 2
corpus: install debian-deps
	$(PY) -m vitsrt.train.corpus $(CORPUS) --hours $(CORPUS_HOURS) --heldout recipes/default-voice/heldout.txt

test: install lint debian-deps
	$(PY) -m pytest -q -m "not slow and not gpu"

# Regenerate the committed gRPC stubs in serve/proto/ from protos/vitsrt/v1/tts.proto (pinned grpcio-tools;
# tests/test_grpc_protos.py fails when they are stale).
protos: install
	$(PY) -m vitsrt.serve.proto.generate

# The main job: the shipped default voice (vitsrt/voices/default: trained by this project on a free offline
# corpus, recipes/default-voice/) speaks, streamed through the engine; prints time to first audio and real-time
# factor and writes out/demo.wav (speaker slt) and out/demo-<speaker>.wav for the others.
DEMO_TEXT ?= Hello! This is vitsrt, speaking with its default voice. It was trained from scratch on a small free corpus, and it streams its audio as it goes.
demo: install-demo
	@mkdir -p $(OUT)
	$(VENV)/bin/vitsrt synth "$(DEMO_TEXT)" --speaker slt --stream -o $(OUT)/demo.wav
	@for speaker in rms awb kal; do \
		$(VENV)/bin/vitsrt synth "$(DEMO_TEXT)" --speaker $$speaker --stream -o $(OUT)/demo-$$speaker.wav || exit 1; \
	done

# The deployment path on the upstream Bert-VITS2 2.3 parity checkpoint (random weights: noise-like audio):
# inspect -> export (with the onnxruntime-vs-torch verification table) -> stream a WAV.
DEMO_IDS ?= 0 12 0 45 0 67 0 23 0 89 0 34 0 56 0 78 0 90 0 11 0 22 0 33 0 44 0 55 0 66 0 77 0 88 0 99 0 10 0
demo-export: install
	$(VENV)/bin/vitsrt info $(FIXTURE)/G_0.pth -c $(FIXTURE)/config.json
	$(VENV)/bin/vitsrt export $(FIXTURE)/G_0.pth -c $(FIXTURE)/config.json -o $(OUT)/tiny-voice --force
	$(VENV)/bin/vitsrt synth -v $(OUT)/tiny-voice --ids "$(DEMO_IDS)" --stream --seed 1 -o $(OUT)/tiny-demo.wav

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(OUT) .pytest_cache .ruff_cache *.egg-info

# The prepared GPU check (scripts/gpu_check.sh; README "Installing for a GPU"): on a GPU machine with no network it
# installs only the carried wheels it lacks (scripts/gpu_check.sh --fetch-wheels), runs the gpu/tensorrt tests and
# the torch-cuda benchmark, and writes JSON results to GPU_CHECK_OUT. DRY_RUN=1 checks on any machine that it is
# complete. It installs nothing from the locks (the GPU machine's own torch is the one to test).
# Its Python: the project's virtual environment where there is one (a developer's machine), else $(PYTHON) (the GPU
# machine's own, which holds its CUDA torch).
GPU_CHECK_OUT ?= $(OUT)/gpu-check
GPU_CHECK_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
.PHONY: gpu-check
gpu-check:
	PYTHON=$(GPU_CHECK_PYTHON) bash scripts/gpu_check.sh $(if $(DRY_RUN),--dry-run) $(GPU_CHECK_OUT)
