import json
import random

import pytest

import au_agent_cli
from affectgpt_patch.agent.rules import rules_description
from au_core import contract
from au_core.errors import AUAgentError
from au_core.facs import AU_NAMES, AU_PHRASES
from au_core.fidelity import FidelityTally, corpus_fidelity, f1_histogram, fidelity, find_mentions, mentioned_aus
from au_standins.synthetic import TEACHER_PARAPHRASES, TEACHER_PHRASES, teacher_description
from data_prep import clean

BROWS_UP = {"AU01", "AU02"}

# Everyday phrasings of real teacher text (GPT-4o / Gemini style), with word forms, hyphens and plurals.
COMMON = [
    ("brow lowering", {"AU04"}), ("a furrowed brow", {"AU04"}), ("furrowed brows", {"AU04"}), ("a frown", {"AU04"}),
    ("frowning slightly", {"AU04"}), ("the brows are drawn together", {"AU04"}), ("knitted eyebrows", {"AU04"}),
    ("brows lowered and pulled together", {"AU04"}), ("the brow furrows", {"AU04"}),
    ("lips part", {"AU25"}), ("parted lips", {"AU25"}), ("the lips are slightly apart", {"AU25"}),
    ("lip parting", {"AU25"}), ("separation of the lips", {"AU25"}),
    ("a smile", {"AU12"}), ("smiling", {"AU12"}), ("a broad grin", {"AU12"}), ("lip corners pulled up", {"AU12"}),
    ("upward pull of the lip corners", {"AU12"}), ("up-turned mouth corners", {"AU12"}),
    ("lip corner pulling", {"AU12"}), ("the corners of the mouth lift", {"AU12"}),
    ("widened eyes", {"AU05"}), ("eyes opened wide", {"AU05"}), ("wide-eyed", {"AU05"}),
    ("upper lid raising", {"AU05"}), ("raised upper eyelids", {"AU05"}),
    ("a squint", {"AU07"}), ("squinting", {"AU07"}), ("narrowed eyes", {"AU07"}), ("the eyes narrow", {"AU07"}),
    ("lid tightening", {"AU07"}), ("tightened eyelids", {"AU07"}),
    ("crow's feet", {"AU06"}), ("crow\u2019s-feet wrinkles", {"AU06"}), ("cheek raise", {"AU06"}),
    ("raised cheeks", {"AU06"}), ("cheek elevation", {"AU06"}), ("the cheeks lift", {"AU06"}),
    ("jaw drop", {"AU26"}), ("a dropped jaw", {"AU26"}), ("the jaw drops", {"AU26"}), ("jaw lowering", {"AU26"}),
    ("mouth open", {"AU26"}), ("an open mouth", {"AU26"}), ("the mouth opens slightly", {"AU26"}),
    ("a blink", {"AU45"}), ("blinking", {"AU45"}), ("eyes closed", {"AU45"}), ("closed eyes", {"AU45"}),
    ("eye closure", {"AU45"}),
    ("raised eyebrows", BROWS_UP), ("brows raised", BROWS_UP), ("eyebrows are raised", BROWS_UP),
    ("a brow raise", BROWS_UP), ("raising of the brows", BROWS_UP), ("arched eyebrows", BROWS_UP),
    ("inner and outer brow raising", BROWS_UP),
    ("inner brow raise", {"AU01"}), ("the inner corners of the eyebrows lift", {"AU01"}),
    ("outer brow raiser", {"AU02"}), ("arched outer brows", {"AU02"}),
    ("nose wrinkle", {"AU09"}), ("a wrinkled nose", {"AU09"}), ("nose wrinkling", {"AU09"}),
    ("nasal wrinkling", {"AU09"}), ("wrinkling of the nose", {"AU09"}),
    ("a sneer", {"AU10"}), ("upper lip raise", {"AU10"}), ("a raised upper lip", {"AU10"}),
    ("upper lip elevation", {"AU10"}),
    ("a dimple", {"AU14"}), ("dimpling", {"AU14"}), ("dimpled cheeks", {"AU14"}),
    ("down-turned lip corners", {"AU15"}), ("downturned lip corners", {"AU15"}), ("lip corner depression", {"AU15"}),
    ("the lip corners depress", {"AU15"}), ("lip corners pulled down", {"AU15"}),
    ("depression of the lip corners", {"AU15"}), ("the corners of the mouth turn down", {"AU15"}),
    ("chin raise", {"AU17"}), ("a raised chin", {"AU17"}), ("chin raising", {"AU17"}), ("chin elevation", {"AU17"}),
    ("lip stretch", {"AU20"}), ("stretched lips", {"AU20"}), ("lips stretched horizontally", {"AU20"}),
    ("pressed lips", {"AU23"}), ("tightened lips", {"AU23"}), ("lips pressed together", {"AU23"}),
    ("lip tightening", {"AU23"}), ("lip compression", {"AU23"}), ("tense lips", {"AU23"}),
    ("lips sucked in", {"AU28"}),
    ("AU12 and AU 4 are active", {"AU04", "AU12"}), ("au06_r", {"AU06"}),
]

NEGATED = [
    ("no brow raise", set()),
    ("without any smile", set()),
    ("absence of lip tightening", set()),
    ("the brows are not lowered", set()),
    ("The brows aren't lowered.", set()),
    ("neither brow lowering nor lip tightening", set()),
    ("no brow raise, lip press, or smile", set()),
    ("There is no sign of a smile.", set()),
    ("A smile is absent.", set()),
    ("The face is devoid of jaw dropping and blinking.", set()),
    ("pressed lips rather than a smile", {"AU23"}),
    ("a slight smile without brow raising", {"AU12"}),
    ("no smile, but the brows are raised", BROWS_UP),
    ("no smile; brow lowering", {"AU04"}),
    ("There is no smile. The brows are lowered.", {"AU04"}),
    ("Brows lowered with no smile", {"AU04"}),
    ("The lips are parted and not pressed.", {"AU25"}),
    ("no smile, and the jaw drops", {"AU26"}),
    ("no lid tightening, with lips slightly apart", {"AU25"}),
]


@pytest.mark.parametrize("code, name", sorted(AU_NAMES.items()))
def test_every_facs_name_maps_to_its_au(code, name):
    assert mentioned_aus(name) == {code}
    assert mentioned_aus(name.lower()) == {code}
    assert mentioned_aus(f"The {name.lower()} is visible.") == {code}


@pytest.mark.parametrize("code, phrase", sorted(AU_PHRASES.items()))
def test_every_rule_phrase_maps_to_its_au(code, phrase):
    assert mentioned_aus(phrase) == {code}


@pytest.mark.parametrize("code, phrase", [(c, p) for c, ps in sorted(TEACHER_PHRASES.items()) for p in ps])
def test_every_synthetic_teacher_phrase_maps_to_its_au(code, phrase):
    assert mentioned_aus(phrase) == {code}


def test_the_lexicon_earns_most_teacher_paraphrases_but_not_all():
    """The synthetic teacher's paraphrases are written apart from the lexicon, so the evaluation does not score
    the teacher with its own words: the lexicon (au-lexicon-2) reads 44 of the 51 as exactly their AU; it misses
    4 ("a gap between the lips") and misreads 3 ("smile lines around the eyes" as AU12), which is what the
    teacher's measured fidelity pays for them."""
    exact = missed = wrong = 0
    for code, phrases in TEACHER_PARAPHRASES.items():
        assert set(phrases).isdisjoint(TEACHER_PHRASES[code])
        for phrase in phrases:
            found = mentioned_aus(phrase)
            exact += found == {code}
            missed += not found
            wrong += bool(found) and found != {code}
    assert (exact, missed, wrong) == (44, 4, 3)


def test_paraphrases_appear_at_the_requested_rate():
    rng = random.Random(1)
    paraphrases = {p for ps in TEACHER_PARAPHRASES.values() for p in ps}
    texts = [teacher_description({"AU04": 2.0, "AU07": 1.2, "AU23": 1.6}, rng, faithful=True, paraphrase_rate=0.3)
             for _ in range(400)]
    used = sum(any(p in t for p in paraphrases) for t in texts)
    assert 0.5 < used / 400 < 0.8  # 1 - 0.7 ** 3 = 0.66 of the texts use at least one
    plain = [teacher_description({"AU04": 2.0}, rng, faithful=True) for _ in range(50)]
    assert not any(p in t for p in paraphrases for t in plain)


@pytest.mark.parametrize("text, expected", COMMON)
def test_common_phrasings(text, expected):
    assert mentioned_aus(text) == expected


@pytest.mark.parametrize("text, expected", NEGATED)
def test_negations_are_not_mentions(text, expected):
    assert mentioned_aus(text) == expected


def test_negated_mentions_are_still_found():
    (mention,) = find_mentions("no brow raise")
    assert mention.negated and mention.aus == ("AU01", "AU02") and mention.phrase == "brow raise"


def test_the_most_specific_reading_wins():
    assert mentioned_aus("inner brows raised") == {"AU01"}
    assert mentioned_aus("Duchenne smile") == {"AU06", "AU12"}
    assert mentioned_aus("chin dimpling") == {"AU17"}
    assert mentioned_aus("levator labii superioris alaeque nasi") == {"AU09"}
    assert mentioned_aus("lip corners pulled down, lips stretched") == {"AU15", "AU20"}


def test_lists_are_followed():
    assert mentioned_aus("lip stretching, and tightening") == {"AU20", "AU23"}
    assert mentioned_aus("lowered, drawn-together brows") == {"AU04"}
    assert mentioned_aus("the brows are raised and drawn together") == {"AU01", "AU02", "AU04"}
    assert mentioned_aus("raised and furrowed brows") == {"AU01", "AU02", "AU04"}


def test_alternatives_resolve_to_the_active_au():
    assert mentioned_aus("The mouth is open.") == {"AU26"}  # the primary reading
    assert mentioned_aus("The mouth is open.", {"AU25"}) == {"AU25"}
    assert fidelity("The mouth is open.", {"AU25": 1.2}).f1 == 1.0
    assert fidelity("The mouth is open.", {"AU04": 1.2}).hallucinated == {"AU26"}


def test_text_without_au_words():
    for text in ("", "   ", contract.NEUTRAL_DESCRIPTION, "The person looks calm and attentive.", "AU99 and AU3",
                 "the lower part of the lips", "unsmiling", "the lower jaw and the upper lip are still"):
        assert mentioned_aus(text) == set(), text


def test_scores():
    s = fidelity("A smile with raised cheeks and a blink.", contract.parse_input("AU06: 1.20, AU12: 2.00, AU25: 1.10"))
    assert s.mentioned == {"AU06", "AU12", "AU45"} and s.active == {"AU06", "AU12", "AU25"}
    assert s.hallucinated == {"AU45"} and s.missed == {"AU25"}
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3) and s.f1 == pytest.approx(2 / 3)
    assert fidelity(contract.NEUTRAL_DESCRIPTION, {}).f1 == 1.0  # nothing active, nothing mentioned
    empty = fidelity("The person looks calm.", {"AU04"})
    assert (empty.precision, empty.recall, empty.f1) == (1.0, 0.0, 0.0)
    assert fidelity("a smile", {"AU12_r": 1.0, "AU04_r": 0.3}).f1 == 1.0  # raw values: only > 0.8 is active
    with pytest.raises(AUAgentError):
        fidelity("a smile", {"smile"})


def test_corpus_tally():
    tally = FidelityTally()
    tally.add(fidelity("A smile and a frown.", {"AU12"}))  # 1 correct, 1 hallucinated
    tally.add(fidelity("Parted lips.", {"AU25", "AU26"}))  # 1 correct, 1 missed
    s = tally.summary()
    assert (s["records"], s["aus_mentioned"], s["aus_active"], s["hallucinated"], s["missed"]) == (2, 3, 3, 1, 1)
    assert s["precision"] == s["recall"] == s["f1"] == round(2 / 3, 4) and s["hallucination_rate"] == round(1 / 3, 4)
    assert s["records_with_hallucination"] == 1 and s["records_with_omission"] == 1
    assert s["per_au"]["AU04"] == {"active": 0, "mentioned": 1, "correct": 0, "hallucinated": 1, "missed": 0,
                                   "precision": 0.0, "recall": 1.0, "f1": 0.0}
    assert list(s["per_au"]) == ["AU04", "AU12", "AU25", "AU26"]
    assert corpus_fidelity([("A smile and a frown.", {"AU12"}), ("Parted lips.", {"AU25", "AU26"})]) == s
    assert f1_histogram([0.0, 0.79, 0.8, 0.999, 1.0]) == {"0.0": 1, "0.2": 0, "0.4": 0, "0.5": 0, "0.6": 0,
                                                         "0.7": 1, "0.8": 1, "0.9": 1, "1.0": 1}


def test_faithful_texts_score_one_and_the_teacher_sometimes_does_not():
    rng = random.Random(0)
    codes = sorted(TEACHER_PHRASES)
    unfaithful = 0
    for _ in range(300):
        active = contract.active_aus({c: rng.uniform(0.81, 5.0) for c in rng.sample(codes, rng.randint(1, 7))})
        assert fidelity(rules_description(contract.format_input(active)), active).f1 == 1.0
        assert fidelity(teacher_description(active, rng, faithful=True), active).f1 == 1.0
        unfaithful += fidelity(teacher_description(active, rng), active).f1 < 1.0
    assert 20 <= unfaithful <= 120  # the synthetic teacher errs on about one record in five


def record(input_str, output):
    return clean.CleanRecord(video="v", frame=1, input=input_str, output=output, source="test", path="p")


def test_fidelity_filter():
    keep = clean.fidelity_filter(0.99)
    assert keep(record("AU06: 1.20, AU12: 2.00", "Raised cheeks and a smile.")) is None
    assert keep(record("AU06: 1.20, AU12: 2.00", "A smile and a frown.")) == clean.LOW_FIDELITY
    assert clean.fidelity_filter(0.0)(record("AU06: 1.20", "The person looks calm.")) is None
    tally = FidelityTally()
    check = clean.fidelity_filter(0.5, tally)
    assert [check(record("AU12: 2.00", t)) for t in ("A smile.", "A frown.")] == [None, clean.LOW_FIDELITY]
    assert tally.summary(per_au=False)["records"] == 2 and tally.summary()["hallucinated"] == 1
    for bad in (-0.1, 1.5):
        with pytest.raises(AUAgentError, match="min-fidelity"):
            clean.fidelity_filter(bad)


def test_prepare_data_min_fidelity_drops_unfaithful_records(samples, sample_dataset, tmp_path):
    out = tmp_path / "ds"
    rc = au_agent_cli.main(["-q", "prepare-data", "--mer-factory-output", str(samples / "mer_factory"),
                            "--openface-dir", str(samples / "openface"), "--out", str(out), "--min-fidelity", "0.99"])
    assert rc == 0
    everything = json.loads((sample_dataset / "au_instruction_dataset.json").read_text())
    low = [r for r in everything if fidelity(r["output"], contract.parse_input(r["input"])).f1 < 0.99]
    assert low, "the synthetic teacher should make some mistakes"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped"][clean.LOW_FIDELITY] == len(low)
    kept = json.loads((out / "au_instruction_dataset.json").read_text())
    assert len(kept) == len(everything) - len(low)
    assert all(fidelity(r["output"], contract.parse_input(r["input"])).f1 >= 0.99 for r in kept)
    baseline = json.loads((sample_dataset / "stats.json").read_text())
    assert clean.LOW_FIDELITY not in baseline["dropped"]


def test_prepare_data_rejects_an_out_of_range_threshold(samples, tmp_path, capsys):
    rc = au_agent_cli.main(["-q", "prepare-data", "--mer-factory-output", str(samples / "mer_factory"),
                            "--out", str(tmp_path / "ds"), "--min-fidelity", "1.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "min-fidelity" in err[0]


@pytest.mark.parametrize("unit, size", [
    ("The brows are raised and the lips part slightly, with a faint smile, no frown, the cheeks lift. ", 1_000_000),
    ("the brows are raised and the lips part no smile the cheeks lift ", 300_000),  # one clause, no punctuation
    ("no smile, brows raised, lips part, ", 300_000),  # one negated comma list
])
def test_a_megabyte_of_text_is_scored_in_linear_time(unit, size):
    """The matcher must stay linear: a quadratic step made a 4.8 MB teacher text run for hours (and these
    texts for minutes). No clock is read: a linear matcher simply finishes."""
    small = unit * 20
    big = unit * (size // len(unit))
    small_mentions, big_mentions = find_mentions(small), find_mentions(big)
    per_unit = len(small_mentions) // 20
    assert per_unit > 0 and len(big_mentions) == per_unit * (size // len(unit))
    # the readings repeat with the text: the last unit reads as it does at the end of a short text
    assert [(m.aus, m.negated) for m in big_mentions[-per_unit:]] == \
        [(m.aus, m.negated) for m in small_mentions[-per_unit:]]
