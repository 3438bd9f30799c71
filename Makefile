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
BASE_MODEL ?= Qwen/Qwen2.5-7B-Instruct
RECIPE ?= qwen2.5_7b_lora_sft
TRAIN_ARGS ?=

.PHONY: install prepare-data train-agent demo test bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
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
	$(AU_AGENT) train --recipe $(RECIPE) --dataset $(DATASET) --base-model $(BASE_MODEL) --out $(OUT) $(TRAIN_ARGS)

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	@$(OFFLINE) $(PY) -m pytest -q tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.run $(BENCH_ARGS)

demo: $(STAMP)
	$(OFFLINE) $(PY) samples/run_demo.py --out demo_out

clean:
	rm -rf demo_out bench_out .pytest_cache build *.egg-info
