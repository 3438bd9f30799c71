import pytest

from au_core import contract
from au_core.errors import AUAgentError


def test_input_string_format():
    values = {"AU25_r": 1.764, "AU01_r": 0.98, "AU05": 0.98, "AU07_r": 2.35, "AU02_r": 0.31, "AU45_r": 0.8}
    assert contract.format_input(values) == "AU01: 0.98, AU05: 0.98, AU07: 2.35, AU25: 1.76"


def test_threshold_is_strict_and_applies_after_rounding():
    assert contract.format_input({"AU01": 0.80}) == contract.NEUTRAL_INPUT
    assert contract.format_input({"AU01": 0.804}) == contract.NEUTRAL_INPUT  # rounds to 0.80
    assert contract.format_input({"AU01": 0.805}) == "AU01: 0.81"


def test_neutral_convention():
    assert contract.format_input({}) == contract.NEUTRAL_INPUT
    assert contract.is_neutral(contract.format_input({"AU12_r": 0.2}))
    assert contract.parse_input(contract.NEUTRAL_INPUT) == {}


@pytest.mark.parametrize("values,match", [({"AU01_c": 1.0}, "not an AU intensity key"),
                                          ({"AU08_r": 1.0}, "unknown AU 'AU08'"),
                                          ({"AU01_r": "abc"}, "non-numeric"),
                                          ({"AU01_r": float("nan")}, "non-finite")])
def test_bad_values_are_refused(values, match):
    with pytest.raises(AUAgentError, match=match):
        contract.format_input(values)


def test_round_trip_and_prompt():
    s = "AU04: 1.20, AU12: 2.50"
    assert contract.format_input(contract.parse_input(s)) == s
    text = contract.prompt_text(s)
    assert text.startswith("<|im_start|>system\n" + contract.SYSTEM_PROMPT + "<|im_end|>\n")
    assert text.endswith(f"<|im_start|>user\n{contract.INSTRUCTION}\n{s}<|im_end|>\n<|im_start|>assistant\n")
    assert contract.chat_messages(s)[1]["content"] == f"{contract.INSTRUCTION}\n{s}"


def test_contract_description_carries_version():
    d = contract.describe()
    assert d["contract_version"] == contract.CONTRACT_VERSION and d["system_prompt"] == contract.SYSTEM_PROMPT
