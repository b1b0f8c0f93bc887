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

.PHONY: install test lint demo demo-export clean protos corpus debian-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[torch,ipa,train,triton,bench,eval,dev]"
	# tritonserver (Python backend, runs on CPU) for the Triton tests. --no-deps: its pins (numpy<2,
	# protobuf<7 through tritonclient[grpc]) conflict with ours, and none of them is needed to run it.
	$(PIP) install -q --no-deps "nvidia-pytriton==0.7.0"
	touch $@

lint: install
	$(PY) -m ruff check .

# Debian *main* packages for the default voice's corpus (flite: CMU Flite voices slt, rms, awb, kal16 and the
# public-domain Alice text). Needs root; elsewhere the tests that need flite skip with a reason.
DEBIAN_PACKAGES ?= flite
debian-deps:
	@if command -v flite >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	else echo "debian-deps: no flite and no root apt-get: corpus tests will skip"; fi

# The default voice's corpus (recipes/default-voice/README.md): CORPUS_HOURS of flite speech + metadata.csv.
CORPUS ?= $(OUT)/corpus
CORPUS_HOURS ?= 2
corpus: install debian-deps
	$(PY) -m vitsrt.corpus $(CORPUS) --hours $(CORPUS_HOURS) --heldout recipes/default-voice/heldout.txt

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
demo: install
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
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache *.egg-info
