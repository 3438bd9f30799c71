# Every target creates or updates .venv first (idempotent: reinstalls only when setup.cfg, pyproject.toml or
# constraints.txt changed), then calls the `au-agent` command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AU_AGENT := $(VENV)/bin/au-agent
STAMP := $(VENV)/.installed
EXTRAS ?= train,agent,eval,ray,dev
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# prepare-data
MER_FACTORY_OUTPUT ?= samples/mer_factory
OPENFACE_DIR ?=
OUT ?= output/au_dataset
PREPARE_ARGS ?=

# train-agent (OUT there is the agent folder; the dataset is DATASET)
DATASET ?= output/au_dataset
BASE_MODEL ?=
RECIPE ?=
# empty BASE_MODEL / RECIPE: au-agent train's defaults (the recipe qwen2.5_7b_lora_sft and its base model)
TRAIN_ARGS ?=

.PHONY: install prepare-data train-agent demo test lint bench gpu-check clean

install: $(STAMP)

# LLaMA-Factory 0.9.5 (the train extra) needs Python >= 3.11; only the agent runtime runs on 3.10.
PY310_MESSAGE := error: the train extra (LLaMA-Factory 0.9.5) needs Python >= 3.11; on Python 3.10 only the agent \
runtime inside AffectGPT runs (mixin, features, agent backends): make install EXTRAS=agent,eval or \
pip install -e ".[agent]"

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@py=$$(test -x $(PY) && echo $(PY) || echo $(PYTHON)); \
	$$py -c 'import sys; sys.exit(3 if sys.version_info < (3, 11) and "train" in "$(EXTRAS)".split(",") else 0)'; \
	rc=$$?; if [ $$rc -eq 3 ]; then echo '$(PY310_MESSAGE)' >&2; exit 1; fi; exit $$rc
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@$(PY) -m pip check || echo "warning: pip check reported conflicts (see above)"
	@touch $@

prepare-data: $(STAMP)
	$(AU_AGENT) prepare-data --mer-factory-output $(MER_FACTORY_OUTPUT) \
		$(if $(OPENFACE_DIR),--openface-dir $(OPENFACE_DIR)) --out $(OUT) $(PREPARE_ARGS)

train-agent: OUT = output/au_agent_qwen2.5_7b_lora
train-agent: $(STAMP)
	$(AU_AGENT) train $(if $(RECIPE),--recipe $(RECIPE)) --dataset $(DATASET) \
		$(if $(BASE_MODEL),--base-model $(BASE_MODEL)) --out $(OUT) $(TRAIN_ARGS)

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	@$(OFFLINE) $(PY) -m pytest -q tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# ruff over the project, then mypy over the files [tool.mypy] names (pyproject.toml); both run, either failing fails.
lint: $(STAMP)
	@rc=0; \
	echo "$(PY) -m ruff check ."; $(PY) -m ruff check . || rc=1; \
	echo "$(PY) -m mypy"; $(PY) -m mypy || rc=1; \
	exit $$rc

bench: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.run $(BENCH_ARGS)

# Every CUDA path once, on models it builds (needs an NVIDIA GPU; exit 2 without one): gpu_check/report.json
gpu-check: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

demo: $(STAMP)
	$(OFFLINE) $(PY) samples/run_demo.py --out demo_out

clean:
	rm -rf demo_out bench_out gpu_check .pytest_cache build *.egg-info

# AffectGPT's own environment (Python 3.10, torch 2.4.0, transformers 4.49.0, peft 0.13.2, ...) plus
# au-agent[agent] and pytest: for `au-agent smoke-affectgpt`, for running a patched AffectGPT, and for
# `make test-affectgpt-env`, which runs the tests of the code AffectGPT imports on that stack. Idempotent like .venv;
# a venv on another Python than the one found is rebuilt.
AFFECTGPT_VENV ?= .venv-affectgpt
AFFECTGPT_REQ := affectgpt_patch/smoke/requirements-affectgpt.txt
# Named for Python 3.10: a venv that an older `make affectgpt-env` built on another Python is rebuilt.
AFFECTGPT_STAMP := $(AFFECTGPT_VENV)/.installed-py310
# Empty: the first Python 3.10 among python3.10 on PATH and pyenv's 3.10 installs.
AFFECTGPT_PYTHON ?=
NO_PY310_MESSAGE := error: AffectGPT runs on Python 3.10 and none was found: install Python 3.10 (pyenv install \
3.10, or the python3.10 package of your distribution) or name one with AFFECTGPT_PYTHON=/path/to/python3.10

.PHONY: affectgpt-env test-affectgpt-env
affectgpt-env: $(AFFECTGPT_STAMP)

$(AFFECTGPT_STAMP): $(AFFECTGPT_REQ) setup.cfg pyproject.toml
	@py='$(AFFECTGPT_PYTHON)'; \
	if [ -z "$$py" ]; then \
	  pyenv_root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
	  for c in python3.10 $$pyenv_root/versions/3.10*/bin/python3.10; do \
	    if "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then py=$$c; break; fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then echo '$(NO_PY310_MESSAGE)' >&2; exit 1; fi; \
	want=$$("$$py" -c 'import platform; print(platform.python_version())' 2>/dev/null) \
	  || { echo "error: AFFECTGPT_PYTHON=$$py does not run" >&2; exit 1; }; \
	have=$$($(AFFECTGPT_VENV)/bin/python -c 'import platform; print(platform.python_version())' 2>/dev/null); \
	if [ "$$have" != "$$want" ]; then rm -rf $(AFFECTGPT_VENV) && "$$py" -m venv $(AFFECTGPT_VENV) || exit 1; fi; \
	echo "$(AFFECTGPT_VENV): Python $$want ($$py)"
	$(AFFECTGPT_VENV)/bin/python -c 'import sys; assert sys.version_info >= (3, 10), "AffectGPT needs Python >= 3.10"'
	$(AFFECTGPT_VENV)/bin/python -m pip install -q -U pip
	$(AFFECTGPT_VENV)/bin/python -m pip install -q -r $(AFFECTGPT_REQ) -e ".[agent]" "pytest>=7"
	@$(AFFECTGPT_VENV)/bin/python -m pip check || echo "warning: pip check reported conflicts (see above)"
	@touch $@

# The tests of the code that runs inside AffectGPT (AFFECTGPT_STACK_FILES in tests/conftest.py), on AffectGPT's stack.
# An empty selection fails.
test-affectgpt-env: $(AFFECTGPT_STAMP)
	@$(OFFLINE) AU_AGENT_OTHER_PYTHON=$(abspath $(PY)) $(AFFECTGPT_VENV)/bin/python -m pytest -q --affectgpt-stack tests $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc
