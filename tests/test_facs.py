import pytest

from au_core.errors import AUAgentError
from au_core.facs import AU_NAMES, INTENSITY_AUS, PRESENCE_AUS, code_for_name, normalize_code, parse_au_template


def test_openface_au_sets():
    assert len(INTENSITY_AUS) == 17 and len(PRESENCE_AUS) == 18
    assert "AU28" in PRESENCE_AUS and "AU28" not in INTENSITY_AUS
    assert INTENSITY_AUS == sorted(INTENSITY_AUS, key=lambda c: int(c[2:]))


@pytest.mark.parametrize("key,code", [(" AU01_r", "AU01"), ("au1", "AU01"), ("AU45_c", "AU45"), ("AU12", "AU12"),
                                      ("confidence", None), ("AUx_r", None)])
def test_normalize_code(key, code):
    assert normalize_code(key) == code


def test_reverse_lookup_every_name():
    for code, name in AU_NAMES.items():
        assert code_for_name(name) == code
        assert code_for_name(name.upper()) == code
    assert code_for_name("Lip corner puller (smile)") == "AU12"
    with pytest.raises(AUAgentError, match="unknown FACS name"):
        code_for_name("Eyebrow wiggle")


def test_parse_mer_factory_template():
    text = ("Inner brow raiser (intensity: 0.98), Lip corner puller (smile) (intensity: 1.74), "
            "Lips part (intensity: 1.76)")
    assert parse_au_template(text) == {"AU01": 0.98, "AU12": 1.74, "AU25": 1.76}
    with pytest.raises(AUAgentError, match="cannot read AU template"):
        parse_au_template("Inner brow raiser (intensity: 0.98), something else")
