"""The shipped LLaMA-Factory recipes: the seed's settings, the prompt contract, keys LLaMA-Factory 0.9.5 accepts,
DeepSpeed files that exist, and the merge recipe run for real on the tiny trained adapter."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from au_core import contract
from au_core.errors import AUAgentError
from data_prep.build import TRAIN_SPLIT, VAL_SPLIT
from llamafactory_configs.recipe import (
    RECIPE_DIR,
    RENAMED_KEYS,
    check_recipe,
    find_deepspeed_config,
    load_recipe,
    recipe_names,
    training_recipe_names,
)

SFT_7B = ["qwen2.5_7b_lora_sft", "qwen2.5_7b_qlora_sft", "qwen2.5_7b_lora_sft_8bit", "qwen2.5_7b_lora_sft_ds_z2",
          "qwen2.5_7b_lora_sft_ds_z3", "qwen2.5_7b_lora_sft_ray"]
TINY = ["tiny_cpu_lora_sft", "tiny_cpu_full_sft"]
TRAINING = SFT_7B + TINY
INFERENCE = ["qwen2.5_7b_lora_predict", "qwen2.5_7b_merge", "qwen2.5_7b_api"]
SEED_SETTINGS = {
    "model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", "stage": "sft", "finetuning_type": "lora", "lora_rank": 64,
    "lora_alpha": 128, "lora_dropout": 0.05, "lora_target": "all", "num_train_epochs": 3.0,
    "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "learning_rate": 5.0e-5,
    "lr_scheduler_type": "cosine", "bf16": True, "cutoff_len": 1024, "eval_steps": 500, "save_steps": 500,
}


def recipe(name: str) -> dict:
    return load_recipe(RECIPE_DIR / f"{name}.yaml")


def test_every_recipe_is_listed_here():
    assert sorted(TRAINING + INFERENCE) == recipe_names()


def test_the_recipes_train_lists_are_those_it_accepts():
    """`au-agent train --help` names the recipes it runs; the others it refuses before launch."""
    assert training_recipe_names() == sorted(TRAINING)
    for name in INFERENCE:
        with pytest.raises(AUAgentError, match="not a LoRA or full SFT training recipe"):
            check_recipe(recipe(name), RECIPE_DIR / f"{name}.yaml")


def test_the_7b_recipe_follows_the_seed():
    r = recipe("qwen2.5_7b_lora_sft")
    assert {k: r[k] for k in SEED_SETTINGS} == SEED_SETTINGS
    assert r["warmup_steps"] > 0 and "disable_gradient_checkpointing" not in r  # LF's default: checkpointing on


@pytest.mark.parametrize("name", TRAINING)
def test_training_recipes_train_on_the_contract(name):
    r = recipe(name)
    full = name == "tiny_cpu_full_sft"  # the demo's random model: LoRA would have nothing to adapt
    assert (r["stage"], r["do_train"], r["finetuning_type"]) == ("sft", True, "full" if full else "lora")
    assert full or r["lora_target"] == "all"
    assert (r["dataset"], r["eval_dataset"]) == (TRAIN_SPLIT, VAL_SPLIT)
    assert r["template"] == contract.TEMPLATE
    assert r["default_system"] == contract.SYSTEM_PROMPT
    assert r["eval_strategy"] == r["save_strategy"] == "steps" and r["eval_steps"] == r["save_steps"]
    assert r["load_best_model_at_end"] and r["metric_for_best_model"] == "eval_loss" and not r["greater_is_better"]
    assert r["plot_loss"] is True and r["report_to"] == "none"
    assert r["overwrite_output_dir"] is False and r["save_only_model"] is False  # resumable
    assert not set(r) & (set(RENAMED_KEYS) | {"warmup_ratio", "val_size"})
    if name in SFT_7B:
        assert {k: r[k] for k in SEED_SETTINGS} == SEED_SETTINGS


def test_variants_differ_from_the_7b_recipe_only_where_they_should():
    base = recipe("qwen2.5_7b_lora_sft")
    extra = {
        "qwen2.5_7b_qlora_sft": {"quantization_bit": 4, "quantization_method": "bnb", "quantization_type": "nf4",
                                 "double_quantization": True, "upcast_layernorm": True},
        "qwen2.5_7b_lora_sft_8bit": {"quantization_bit": 8, "quantization_method": "bnb", "upcast_layernorm": True},
        "qwen2.5_7b_lora_sft_ds_z2": {"deepspeed": "llamafactory_configs/deepspeed/ds_z2_config.json"},
        "qwen2.5_7b_lora_sft_ds_z3": {"deepspeed": "llamafactory_configs/deepspeed/ds_z3_config.json"},
        "qwen2.5_7b_lora_sft_ray": {"ray_num_workers": 4},
    }
    for name, added in extra.items():
        r = recipe(name)
        changed = {k: v for k, v in r.items() if base.get(k) != v}
        assert changed == {**added, "output_dir": r["output_dir"]}
        assert set(base) <= set(r) and r["output_dir"] != base["output_dir"]


@pytest.mark.parametrize("stage", [2, 3])
def testfind_deepspeed_configs(stage):
    path = find_deepspeed_config(recipe(f"qwen2.5_7b_lora_sft_ds_z{stage}")["deepspeed"], RECIPE_DIR / "x.yaml")
    assert path.parent == RECIPE_DIR / "deepspeed"
    cfg = json.loads(path.read_text())
    assert cfg["zero_optimization"]["stage"] == stage
    # the trainer fills these from the recipe, so the JSON never contradicts it
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert cfg[key] == "auto"
    assert cfg["bf16"]["enabled"] == cfg["fp16"]["enabled"] == "auto"
    if stage == 3:
        assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_ray_recipe_is_read_by_llamafactorys_ray_path(monkeypatch):
    """With USE_RAY=1 (set by au-agent train for this recipe) LLaMA-Factory's run_exp takes its Ray Train
    branch and reads ray_num_workers from the recipe."""
    from llamafactory.hparams import get_ray_args

    monkeypatch.setenv("USE_RAY", "1")
    ray_args = get_ray_args(recipe("qwen2.5_7b_lora_sft_ray"))
    assert ray_args.use_ray and ray_args.ray_num_workers == 4 and ray_args.ray_init_kwargs is None
    monkeypatch.setenv("USE_RAY", "0")
    assert not get_ray_args(recipe("qwen2.5_7b_lora_sft_ray")).use_ray


def test_inference_recipes():
    predict, merge, api = (recipe(n) for n in INFERENCE)
    for r in (predict, merge, api):
        assert r["template"] == contract.TEMPLATE and r["default_system"] == contract.SYSTEM_PROMPT
        assert r["adapter_name_or_path"].endswith("/checkpoint-best") and r["finetuning_type"] == "lora"
    assert predict["do_predict"] and predict["predict_with_generate"] and predict["eval_dataset"] == VAL_SPLIT
    assert predict["do_sample"] is False and api["do_sample"] is False and api["temperature"] == 0
    assert merge["export_device"] == "cpu" and merge["export_legacy_format"] is False
    assert api["infer_backend"] == "huggingface" and api["vllm_max_lora_rank"] == 64


def train_argument_classes() -> tuple:
    """What ``llamafactory-cli train`` parses a recipe into (``export`` and ``api`` drop the last)."""
    import llamafactory.hparams as hp

    return hp.ModelArguments, hp.DataArguments, hp.FinetuningArguments, hp.GeneratingArguments, hp.TrainingArguments


@pytest.mark.parametrize("name", TRAINING + INFERENCE)
def test_llamafactory_knows_every_key(name):
    classes = train_argument_classes()
    if name in ("qwen2.5_7b_merge", "qwen2.5_7b_api"):
        classes = classes[:-1]
    assert set(recipe(name)) <= {f.name for cls in classes for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", ["qwen2.5_7b_merge", "qwen2.5_7b_api"])
def test_llamafactory_parses_the_inference_recipes(name, quiet_transformers):
    from llamafactory.hparams import get_infer_args

    model_args, data_args, _, generating_args = get_infer_args(recipe(name))
    assert data_args.template == contract.TEMPLATE and data_args.default_system == contract.SYSTEM_PROMPT
    assert model_args.adapter_name_or_path == [recipe(name)["adapter_name_or_path"]]
    if name == "qwen2.5_7b_api":
        assert generating_args.do_sample is False and model_args.vllm_max_lora_rank == 64


@pytest.mark.parametrize("name", TRAINING + ["qwen2.5_7b_lora_predict"])
def test_transformers_accepts_the_training_arguments(name, tmp_path):
    """HF's own checks (eval/save steps that allow the best-model reload, schedulers, ...) pass on every
    recipe. bf16 and DeepSpeed are switched off: they need a GPU and the deepspeed package."""
    from transformers import HfArgumentParser

    r = {k: v for k, v in recipe(name).items() if k not in ("deepspeed", "quantization_bit")}
    r.update(bf16=False, output_dir=str(tmp_path))
    _, data_args, finetuning_args, _, training_args = HfArgumentParser(train_argument_classes()).parse_dict(r)
    assert data_args.template == "qwen"
    if r.get("do_train"):
        assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "eval_loss"
        assert finetuning_args.finetuning_type == r["finetuning_type"]


def test_merge_recipe_exports_a_model_that_matches_the_adapter(tiny_adapter, tiny_qwen2, tmp_path,
                                                               quiet_transformers):
    """LLaMA-Factory's export (what ``llamafactory-cli export`` runs) with the 7B merge recipe, paths overridden, on
    the tiny agent: the merged model loads with plain transformers and gives the logits of base + adapter."""
    import torch
    from llamafactory.train.tuner import export_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = tmp_path / "merged"
    best = Path(tiny_adapter) / "checkpoint-best"
    export_model({**recipe("qwen2.5_7b_merge"), "model_name_or_path": str(tiny_qwen2),
                  "adapter_name_or_path": str(best), "export_dir": str(export)})
    tokenizer = AutoTokenizer.from_pretrained(export)
    ids = torch.tensor([tokenizer.encode(contract.prompt_text("AU06: 2.10, AU12: 2.85"), add_special_tokens=False)])
    merged = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = PeftModel.from_pretrained(base, best).eval()(ids).logits
        merged_logits = merged(ids).logits
    assert (merged_logits - base_logits).abs().max() > 0.1  # the adapter is in the merged weights
    assert (merged_logits - peft_logits).abs().max() < 1e-4  # float32 summation order only
