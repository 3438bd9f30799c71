import pytest
from omegaconf import OmegaConf

from affectgpt_patch.agent import agent_config, create_au_agent
from affectgpt_patch.agent.rules import rules_description
from au_core import contract
from au_core.errors import AUAgentError
from au_core.facs import AU_PHRASES, INTENSITY_AUS


def test_every_au_is_named_with_its_intensity():
    for code in INTENSITY_AUS:
        for value, word in ((1.2, "slight"), (2.0, "moderate"), (3.0, "pronounced"), (4.5, "strong")):
            text = rules_description(contract.format_input({code: value}))
            assert f"{AU_PHRASES[code]} ({word})" in text


def test_stable_wording():
    assert rules_description("AU01: 0.98, AU07: 2.85, AU25: 1.76") == (
        "The face shows raised inner brows (slight), tightened eyelids (pronounced) and parted lips (moderate).")
    assert rules_description(contract.NEUTRAL_INPUT) == contract.NEUTRAL_DESCRIPTION


def test_seed_api_with_rules_backend(cache_dir):
    agent = create_au_agent({"au_agent_backend": "rules", "au_agent_cache_dir": str(cache_dir)})
    row = {"frame": 3, " AU01_r": 0.98, " AU01_c": 1.0, " AU25_r": 1.76, " AU12_r": 0.1}
    values = agent.parse_openface_csv(row)
    assert values == {"AU01": 0.98, "AU25": 1.76, "AU12": 0.1}
    text = agent.generate_description(values)
    assert text == "The face shows raised inner brows (slight) and parted lips (moderate)."
    texts = agent.batch_generate_descriptions([values, {"AU12": 0.3}, values], batch_size=2)
    assert texts == [text, contract.NEUTRAL_DESCRIPTION, text]
    assert agent.cache_stats()["hits"] == 1  # the second call found the first one's text


@pytest.mark.parametrize("make_cfg", [
    lambda d: {"au_agent_backend": "rules", "au_agent_cache_dir": d},
    lambda d: OmegaConf.create({"au_agent_backend": "rules", "au_agent_cache_dir": d, "other_key": 1}),
    lambda d: type("DatasetCfg", (), {"au_agent_backend": "rules", "au_agent_cache_dir": d})(),
])
def test_config_sources(make_cfg, cache_dir):
    assert create_au_agent(make_cfg(str(cache_dir))).config.backend == "rules"


@pytest.mark.parametrize("cfg,match", [
    ({"au_agent_backend": "gpt"}, "unknown agent backend"),
    ({"au_agent_backend": "hf"}, "needs a base model"),
    ({"au_agent_backend": "openai"}, "needs api_base"),
    ({"au_agent_backend": "hf", "au_agent_base_model": "x", "au_agent_lora_weights": "/nonexistent/adapter"},
     "LoRA adapter folder not found"),
    ({"au_agent_backend": "rules", "au_agent_batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"au_agent_backend": "rules", "au_agent_max_new_tokens": -5}, "max_new_tokens must be an integer >= 1"),
])
def test_config_errors(cfg, match):
    with pytest.raises(AUAgentError, match=match):
        agent_config(cfg)


def test_bad_au_input_is_one_clear_error(cache_dir):
    agent = create_au_agent(backend="rules", cache_dir=str(cache_dir))
    with pytest.raises(AUAgentError, match="unknown AU intensity column 'AU08_r'"):
        agent.parse_openface_csv({"AU08_r": 1.0})
    with pytest.raises(AUAgentError, match="non-numeric"):
        agent.generate_description({"AU01": "high"})
