"""Training and inference see the same prompt, token for token.

LLaMA-Factory renders each training record with its ``qwen`` template; the agent runtime encodes
``contract.prompt_segments`` itself. Both, and the tokenizer's chat template, must give identical ids for the
system block, the user turn and the assistant header, or the agent is served a prompt it never learned.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from au_core import contract
from data_prep.build import DATASET_FILES, TRAIN_SPLIT, VAL_SPLIT
from llamafactory_configs.recipe import RECIPE_DIR, load_recipe

IGNORE_INDEX = -100  # LLaMA-Factory's label for prompt tokens


def segment_ids(tokenizer, input_str: str) -> list:
    """What the hf backend does: each segment on its own, no special tokens added, concatenated."""
    return [i for segment in contract.prompt_segments(input_str)
            for i in tokenizer.encode(segment, add_special_tokens=False)]


def chat_template_ids(tokenizer, input_str: str) -> list:
    ids = tokenizer.apply_chat_template(contract.chat_messages(input_str), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.fixture(scope="module")
def records(sample_dataset):
    rows = []
    for split in (TRAIN_SPLIT, VAL_SPLIT):
        rows += json.loads((sample_dataset / DATASET_FILES[split]).read_text(encoding="utf-8"))
    assert len(rows) > 100
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


@pytest.fixture(scope="module")
def template(tokenizer):
    """LLaMA-Factory's template, set up from the 7B recipe's own keys."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    recipe = load_recipe(RECIPE_DIR / "qwen2.5_7b_lora_sft.yaml")
    return get_template_and_fix_tokenizer(
        tokenizer, DataArguments(template=recipe["template"], default_system=recipe["default_system"]))


def test_template_prompt_equals_inference_prompt(records, tokenizer, template):
    from affectgpt_patch.agent.prompts import encode_prompt

    for r in records:
        messages = [{"role": "user", "content": contract.user_message(r["input"], r["instruction"])},
                    {"role": "assistant", "content": r["output"]}]
        with_system, response = template.encode_oneturn(tokenizer, messages, system=r["system"])
        by_default, _ = template.encode_oneturn(tokenizer, messages)  # the recipe's default_system
        ours = segment_ids(tokenizer, r["input"])
        assert with_system == by_default == ours
        assert encode_prompt(tokenizer, r["input"]) == ours
        assert chat_template_ids(tokenizer, r["input"]) == ours
        assert tokenizer.decode(ours) == contract.prompt_text(r["input"])
        assert response[-2:] == tokenizer.encode(f"{contract.IM_END}\n", add_special_tokens=False)


def test_llamafactory_dataset_pipeline_trains_on_the_inference_prompt(sample_dataset, tiny_qwen2, tokenizer, records,
                                                                      tmp_path, quiet_transformers):
    """The full loader (dataset_info.json, alpaca converter with the system column, template, masking) on the
    prepare-data output: every example's masked prefix is our prompt, and its labels are the description."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    recipe = load_recipe(RECIPE_DIR / "tiny_cpu_lora_sft.yaml")
    args = {k: recipe[k] for k in ("stage", "do_train", "finetuning_type", "dataset", "eval_dataset", "template",
                                   "default_system", "report_to")}
    args.update(model_name_or_path=str(tiny_qwen2), dataset_dir=str(sample_dataset), output_dir=str(tmp_path / "o"),
                cutoff_len=1024, preprocessing_num_workers=None, overwrite_cache=True)
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    lf_tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(lf_tokenizer, data_args)
    data = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)

    examples = list(data["train_dataset"]) + list(data["eval_dataset"])
    assert len(examples) == len(records)
    for example, r in zip(examples, records):
        labels = example["labels"]
        n_prompt = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        assert example["input_ids"][:n_prompt] == segment_ids(tokenizer, r["input"])
        response = tokenizer.encode(r["output"] + contract.IM_END + "\n", add_special_tokens=False)
        assert labels[n_prompt:] == example["input_ids"][n_prompt:] == response


def test_trained_agent_tokenizer_encodes_alike(tiny_adapter, tokenizer, records):
    """The tokenizer LLaMA-Factory saved with the adapter (which the runtime may load) changes nothing."""
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(Path(tiny_adapter) / "checkpoint-best")
    for r in records[:20]:
        assert segment_ids(saved, r["input"]) == segment_ids(tokenizer, r["input"])
        assert chat_template_ids(saved, r["input"]) == segment_ids(tokenizer, r["input"])
