"""vLLM request building and LoRA settings (the generation path itself runs on a GPU machine only)."""
import json

import pytest

from affectgpt_patch.agent import create_au_agent
from affectgpt_patch.agent.config import agent_config
from affectgpt_patch.agent.vllm_backend import adapter_rank, llm_kwargs, max_lora_rank, sampling_kwargs
from au_core.errors import AUAgentError


def fake_adapter(tmp_path, r=64, rank_pattern=None):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r, "rank_pattern": rank_pattern or {},
                                                              "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct"}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    return tmp_path


def test_lora_rank_is_read_from_the_adapter(tmp_path):
    assert adapter_rank(fake_adapter(tmp_path, 64)) == 64
    assert adapter_rank(fake_adapter(tmp_path, 16, {"layers.0.q_proj": 96})) == 96
    assert [max_lora_rank(r) for r in (4, 16, 64, 96)] == [8, 16, 64, 128]
    with pytest.raises(AUAgentError, match="above what vLLM supports"):
        max_lora_rank(1024)


def test_llm_kwargs_with_adapter(tmp_path):
    config = agent_config(backend="vllm", base_model="Qwen/Qwen2.5-7B-Instruct",
                          lora_weights=str(fake_adapter(tmp_path)))
    kwargs = llm_kwargs(config)
    assert kwargs["model"] == "Qwen/Qwen2.5-7B-Instruct" and kwargs["enable_lora"] is True
    assert kwargs["max_lora_rank"] == 64 and kwargs["max_loras"] == 1 and kwargs["enable_prefix_caching"]


def test_llm_kwargs_for_a_merged_model():
    kwargs = llm_kwargs(agent_config(backend="vllm", base_model="/models/au-agent-merged"))
    assert "enable_lora" not in kwargs and kwargs["model"] == "/models/au-agent-merged"


def test_sampling_is_greedy_by_default():
    config = agent_config(backend="vllm", base_model="m", max_new_tokens=64)
    assert sampling_kwargs(config, [151645]) == {"max_tokens": 64, "stop_token_ids": [151645], "temperature": 0.0,
                                                 "skip_special_tokens": True, "repetition_penalty": 1.0}
    sampled = sampling_kwargs(agent_config(backend="vllm", base_model="m", do_sample=True), [2])
    assert sampled["temperature"] == 0.7 and sampled["seed"] == 0


def test_missing_vllm_is_a_clear_error(tmp_path):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(AUAgentError, match="the vllm backend needs vLLM"):
            create_au_agent(backend="vllm", base_model="m", cache_dir=str(tmp_path))
    else:
        pytest.skip("vLLM is installed here; the error path cannot be exercised")
