"""The hf backend on the tiny Qwen2: real transformers + peft, greedy, batched, cached."""
import json
import shutil

import pytest
from helpers import make_random_adapter

from affectgpt_patch.agent import create_au_agent
from au_core import contract
from au_core.errors import AUAgentError
from au_standins.synthetic import PROTOTYPES

INPUTS = [contract.format_input(v) for v in PROTOTYPES.values()] + [
    "AU01: 0.98", "AU04: 1.50, AU07: 2.20", "AU12: 2.00, AU25: 1.10", "AU45: 2.20", "AU09: 1.30, AU10: 1.90",
    "AU02: 3.10", "AU06: 1.10, AU12: 1.40", "AU15: 2.40, AU17: 1.30", "AU20: 1.60", "AU26: 2.70"]


@pytest.fixture(scope="module")
def adapters(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return make_random_adapter(tiny_qwen2, root / "a", seed=1), make_random_adapter(tiny_qwen2, root / "b", seed=2)


def hf_agent(base, adapter, cache_dir, **kw):
    return create_au_agent({"au_agent_base_model": str(base), "au_agent_lora_weights": str(adapter),
                            "au_agent_use_lora": True}, backend="hf", cache_dir=str(cache_dir),
                           max_new_tokens=12, **kw)


def test_batch_size_does_not_change_the_text(tiny_qwen2, adapters, tmp_path):
    agent = hf_agent(tiny_qwen2, adapters[0], tmp_path, use_cache=False)
    results = {bs: agent.describe_inputs(INPUTS, batch_size=bs) for bs in (1, 3, 16)}
    assert results[1] == results[3] == results[16]
    assert len(set(results[1])) > len(INPUTS) // 2, "the tiny model should say different things to different inputs"
    assert all(t.strip() for t in results[1])


def test_neutral_frames_never_reach_the_model(tiny_qwen2, adapters, tmp_path):
    agent = hf_agent(tiny_qwen2, adapters[0], tmp_path, use_cache=False)
    assert agent.describe_inputs([contract.NEUTRAL_INPUT] * 3) == [contract.NEUTRAL_DESCRIPTION] * 3
    assert agent.generated == 0


def test_cache_hit_is_identical_and_adapter_change_misses(tiny_qwen2, adapters, cache_dir):
    first = hf_agent(tiny_qwen2, adapters[0], cache_dir)
    texts = first.describe_inputs(INPUTS[:6])
    assert first.generated == 6

    again = hf_agent(tiny_qwen2, adapters[0], cache_dir)
    assert again.describe_inputs(INPUTS[:6]) == texts
    assert again.generated == 0 and again.cache_stats()["hits"] == 6

    other = hf_agent(tiny_qwen2, adapters[1], cache_dir)
    assert other.fingerprint != first.fingerprint
    other_texts = other.describe_inputs(INPUTS[:6])
    assert other.generated == 6 and other_texts != texts


def test_merged_and_unmerged_adapter_share_the_fingerprint(tiny_qwen2, adapters, tmp_path):
    merged = hf_agent(tiny_qwen2, adapters[0], tmp_path, use_cache=False)
    unmerged = hf_agent(tiny_qwen2, adapters[0], tmp_path, use_cache=False, merge_lora=False)
    assert merged.fingerprint == unmerged.fingerprint
    assert merged.describe_inputs(INPUTS[:4]) == unmerged.describe_inputs(INPUTS[:4])


def test_adapter_folder_alone_is_an_agent(tiny_qwen2, adapters, tmp_path):
    agent = create_au_agent(str(adapters[0]), cache_dir=str(tmp_path), max_new_tokens=12)  # base from adapter_config
    assert agent.config.base_model == str(tiny_qwen2) and agent.config.backend == "hf"


def test_missing_adapter_files(tiny_qwen2, adapters, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((adapters[0] / "adapter_config.json").read_text())
    with pytest.raises(AUAgentError, match="LoRA adapter weights are missing"):
        hf_agent(tiny_qwen2, broken, tmp_path)
    with pytest.raises(AUAgentError, match="adapter_config.json is missing"):
        hf_agent(tiny_qwen2, tmp_path, tmp_path)


def test_adapter_for_another_base_model_is_refused(tiny_qwen2, adapters, tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    other = tmp_path / "other-base"
    cfg = json.loads((tiny_qwen2 / "config.json").read_text())
    torch.manual_seed(0)
    other_model = Qwen2ForCausalLM(Qwen2Config(vocab_size=cfg["vocab_size"], hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))
    other_model.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_qwen2 / name).is_file():  # transformers 4.x keeps the chat template in tokenizer_config.json
            (other / name).write_bytes((tiny_qwen2 / name).read_bytes())
    with pytest.raises(AUAgentError, match="the adapter does not fit base model") as e:
        hf_agent(other, adapters[0], tmp_path)
    assert str(adapters[0]) in str(e.value) and "\n" not in str(e.value)


def _with_options(adapter, folder, **options):
    """A copy of the adapter whose adapter_config.json also lists options of a newer peft."""
    shutil.copytree(adapter, folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, **options}))
    return folder


def test_adapter_from_a_newer_peft_loads_when_its_new_options_are_off(tiny_qwen2, adapters, tmp_path):
    # what the training venv's peft writes and AffectGPT's peft 0.13 does not know, all off
    newer = _with_options(adapters[0], tmp_path / "newer", peft_version="9.0.0", alora_invocation_tokens=None,
                          ensure_weight_tying=False, qalora_group_size=16, use_qalora=False, future_config={})
    expected = hf_agent(tiny_qwen2, adapters[0], tmp_path, use_cache=False).describe_inputs(INPUTS[:4])
    assert hf_agent(tiny_qwen2, newer, tmp_path, use_cache=False).describe_inputs(INPUTS[:4]) == expected


def test_adapter_using_an_option_this_peft_lacks_is_refused(tiny_qwen2, adapters, tmp_path):
    newer = _with_options(adapters[0], tmp_path / "newer", future_flag=True, future_option=3)
    with pytest.raises(AUAgentError,
                       match=r"uses future_flag=True, future_option=3, which peft \S+ does not know") as e:
        hf_agent(tiny_qwen2, newer, tmp_path)
    assert str(newer / "adapter_config.json") in str(e.value) and "\n" not in str(e.value)


def test_missing_base_model(adapters, tmp_path):
    with pytest.raises(AUAgentError, match="cannot load the tokenizer"):
        hf_agent(tmp_path / "no-model", adapters[0], tmp_path)
