"""The agent card as a typed, versioned record: what training writes is what the runtime reads, field for field,
and a card this version cannot read is refused with one line instead of being half-understood."""
from __future__ import annotations

import json

import pytest

from au_core import contract
from au_core.agent_card import BEST_DIR, CARD_NAME, CARD_VERSION, AgentCard, load_agent_card
from au_core.errors import AUAgentError


def card(**changes) -> AgentCard:
    fields = dict(contract_version=contract.CONTRACT_VERSION, base_model="Qwen/Qwen2.5-7B-Instruct",
                  adapter_dir=BEST_DIR, template=contract.TEMPLATE, system_prompt=contract.SYSTEM_PROMPT,
                  contract=contract.describe(), dataset={"sha1": "0" * 40}, lora={"rank": 8}, metrics={},
                  packages={"python": "3.11"}, recipe={"stage": "sft"}, recipe_name="tiny", created="2026-01-01")
    return AgentCard(**{**fields, **changes})


def written(tmp_path, c: AgentCard):
    c.write(tmp_path)
    (tmp_path / BEST_DIR / "adapter_config.json").write_text("{}")
    return json.loads((tmp_path / CARD_NAME).read_text())


def test_round_trip_keeps_every_field_and_the_file_order(tmp_path):
    c = card()
    data = written(tmp_path, c)
    assert list(data) == list(AgentCard.KEYS) and data["card_version"] == CARD_VERSION
    assert data["stop_tokens"] == list(contract.STOP_TOKENS) and "card_path" not in data
    loaded = load_agent_card(tmp_path)
    assert loaded.adapter_dir == str((tmp_path / BEST_DIR).resolve())
    assert loaded.card_path == str((tmp_path / CARD_NAME).resolve())
    assert {k: v for k, v in loaded.to_json().items() if k != "adapter_dir"} == \
        {k: v for k, v in c.to_json().items() if k != "adapter_dir"}


def test_both_copies_point_at_the_same_weights(tmp_path):
    written(tmp_path, card())
    inner = json.loads((tmp_path / BEST_DIR / CARD_NAME).read_text())
    assert inner["adapter_dir"] == "."
    assert load_agent_card(tmp_path / BEST_DIR).adapter_dir == load_agent_card(tmp_path).adapter_dir


def test_full_fine_tune_is_its_own_model(tmp_path):
    c = card(finetuning_type="full", lora=None)
    assert c.is_full_model and not card().is_full_model
    c.write(tmp_path)
    with pytest.raises(AUAgentError, match="no config.json"):
        load_agent_card(tmp_path)
    (tmp_path / BEST_DIR / "config.json").write_text("{}")
    assert load_agent_card(tmp_path).is_full_model


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(card_version=2), "agent card version 2 is not 1"),
    (lambda d: d.pop("base_model"), "lacks base_model"),
    (lambda d: d.pop("card_version"), "lacks card_version"),
    (lambda d: d.update(base_model=5), "base_model is not a string"),
    (lambda d: d.update(finetuning_type="qlora"), "finetuning_type 'qlora' is not one of lora, full"),
    (lambda d: d.update(contract_version="au-contract-0"), "prompt contract 'au-contract-0'"),
])
def test_a_card_this_version_cannot_read_is_refused(tmp_path, change, message):
    data = written(tmp_path, card())
    change(data)
    (tmp_path / CARD_NAME).write_text(json.dumps(data))
    with pytest.raises(AUAgentError, match=message) as e:
        load_agent_card(tmp_path)
    assert str(tmp_path / CARD_NAME) in str(e.value)


def test_not_an_object_or_not_json(tmp_path):
    (tmp_path / CARD_NAME).write_text("[1]")
    with pytest.raises(AUAgentError, match="not a JSON object"):
        load_agent_card(tmp_path)
    (tmp_path / CARD_NAME).write_text("{")
    with pytest.raises(AUAgentError, match="not readable JSON"):
        load_agent_card(tmp_path)
