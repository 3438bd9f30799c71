"""The AU lexicon that :mod:`au_core.fidelity` matches descriptions against: face parts (``NOUNS``), movements
in every word form (``VERBS``), which part and movement is which AU (``ACTIONS``), fixed words, muscle names and
AU codes (``PHRASES``), the words that may stand between a part and its movement, the negation and clause-boundary
patterns that decide how far a negation reaches, and the tables compiled once into the patterns the matcher tries.
It is data kept apart from the matcher, so that it can be read and extended on its own; a change to what it counts
bumps ``fidelity.LEXICON_VERSION``.
"""
from __future__ import annotations

import collections
import functools
import re
from typing import Dict, List, Tuple

from .facs import AU_NAMES

Claim = Tuple[str, ...]  # alternative AU codes, primary first

# ------------------------------------------------------------------------------------------------ lexicon
# Patterns are regular expressions over normalised text: lower case, hyphens read as spaces ("down-turned" is
# "down turned"), "n't" read as " not", single spaces. Each is matched as whole words.

#: Face parts.
NOUNS: Dict[str, str] = {
    "brows": r"(?:eye)?brows?",
    "inner_brows": r"inner (?:eye)?brows?(?: (?:corners?|ends?|heads?))?|inner (?:corners?|ends?|parts?|portions?|"
                   r"sections?|edges?|halves|half|heads?) of the (?:eye)?brows?|(?:eye)?brows? inner (?:corners?|ends?|"
                   r"parts?)",
    "outer_brows": r"outer (?:eye)?brows?(?: (?:corners?|ends?|tails?))?|outer (?:corners?|ends?|parts?|portions?|"
                   r"sections?|edges?|halves|half|tails?) of the (?:eye)?brows?|(?:eye)?brows? outer (?:corners?|ends?|"
                   r"parts?)|(?:eye)?brow tails?|tails? of the (?:eye)?brows?",
    "inner_outer_brows": r"(?:inner and outer|outer and inner) (?:eye)?brows?",
    "forehead": r"forehead",
    "upper_lids": r"upper (?:eye)?lids?",
    "lower_lids": r"lower (?:eye)?lids?",
    "lids": r"(?:eye)?lids?",
    "eyes": r"eyes?|ocular",
    "cheeks": r"cheeks?|cheekbones?",
    "nose": r"nose|nasal",
    "upper_lip": r"upper lip",
    "lip_corners": r"(?:lip|mouth) corners?|corners? of (?:the|his|her|their) (?:mouth|lips?)|(?:labial )?commissures?",
    "lips": r"lips?",
    "mouth": r"mouth",
    "jaw": r"jaw|mandible",
    "chin": r"chin",
}

_UP = r"(?:up|upwards?)"
_DOWN = r"(?:down|downwards?)"
_MOVE = r"(?:pull(?:s|ed|ing)?|drawn|draw(?:s|ing)?|turn(?:s|ed|ing)?|curl(?:s|ed|ing)?|tilt(?:s|ed|ing)?|" \
        r"curv(?:e|es|ed|ing)|angl(?:e|es|ed|ing)|point(?:s|ed|ing)?|mov(?:e|es|ed|ing)|go(?:es)?|push(?:es|ed|ing)?)"

#: Movements, in every word form the matcher should accept (verb, participle, gerund, FACS agent noun).
VERBS: Dict[str, str] = {
    "raise": r"rais(?:e|es|ed|ing|er|ers)|lift(?:s|ed|ing)?|elevat(?:e|es|ed|ing|ion)|hik(?:e|es|ed|ing) up|"
             r"push(?:es|ed|ing)? up",
    "arch": r"arch(?:es|ed|ing)?",
    "lower": r"lower(?:s|ed|ing|er|ers)?|drawn down|pulled down|draw(?:s|ing)? down|pull(?:s|ing)? down",
    "furrow": r"furrow(?:s|ed|ing)?|knit(?:s|ted|ting)?|knotted|pinch(?:es|ed|ing)?|scrunch(?:es|ed|ing)?",
    "together": r"(?:drawn|draw(?:s|ing)?|pull(?:s|ed|ing)?|brought|bring(?:s|ing)?|knit(?:s|ted)?|push(?:es|ed|ing)?|"
                r"squeez(?:e|es|ed|ing)|mov(?:e|es|ed|ing)) (?:closer )?together",
    "contract": r"contract(?:s|ed|ing|ion)",
    "wrinkle": r"wrinkl(?:e|es|ed|ing|er|ers)|crinkl(?:e|es|ed|ing)|scrunch(?:es|ed|ing)?|crumpl(?:e|es|ed|ing)|"
               r"crease[sd]?|creasing",
    "widen": r"widen(?:s|ed|ing)?|wide|wide open|opened wide|open(?:s|ing)? wide|widely opened|opened widely|"
             r"bulg(?:e|es|ed|ing)|flar(?:e|es|ed|ing)(?: open| wide)?",
    "tighten": r"tighten(?:s|ed|ing|er|ers)?|tight(?:ness)?|tens(?:e|es|ed|ing|ion)|taut(?:ness)?",
    "narrow": r"narrow(?:s|ed|ing)?|squint(?:s|ed|ing)?",
    "close": r"clos(?:e|es|ed|ing|ure)|shut(?:s|ting)?",
    "up": rf"{_MOVE} {_UP}|up ?turned|upward (?:pull(?:ing)?|turn(?:ing)?|curl(?:ing)?|tilt(?:ing)?|curve|"
          r"movement)",
    "pull": r"pull(?:s|ed|ing|er|ers)?|tug(?:s|ged|ging)?|rais(?:e|es|ed|ing)|lift(?:s|ed|ing)?|"
            r"elevat(?:e|es|ed|ing|ion)",
    "down": rf"{_MOVE} {_DOWN}|down ?turned|downward (?:pull(?:ing)?|turn(?:ing)?|curl(?:ing)?|tilt(?:ing)?|curve|"
            r"movement)|depress(?:es|ed|ing|ion|or|ors)?|lower(?:s|ed|ing)|droop(?:s|ed|ing)?|sag(?:s|ged|ging)?|"
            r"descen(?:t|ds?|ding)",
    "part": r"parts?\b(?! of)|parted|parting|apart|separat(?:e|es|ed|ing|ion)|open(?:s|ed|ing)?|unseal(?:s|ed|ing)?",
    "press": r"press(?:es|ed|ing)?|compress(?:es|ed|ing|ion)?|purs(?:e|es|ed|ing)|clamp(?:s|ed|ing)?|"
             r"narrow(?:s|ed|ing)?",
    "stretch": r"stretch(?:es|ed|ing|er|ers)?|"
               r"(?:pull(?:s|ed|ing)?|drawn) (?:sideways|horizontally|wide|outwards?|laterally)",
    "suck": r"suck(?:s|ed|ing)?(?: in)?|(?:drawn|pulled|rolled|tucked) in",
    "drop": r"drop(?:s|ped|ping)?|lower(?:s|ed|ing)|open(?:s|ed|ing)?|slack(?:ens|ened|ening)?|"
            r"depress(?:es|ed|ing|ion)|fall(?:s|en|ing)?|hang(?:s|ing)? open",
    "open": r"open(?:s|ed|ing)?|agape|gap(?:e|es|ed|ing)|ajar",
    "curl": r"curl(?:s|ed|ing)?(?: up)?",
    "dimple": r"dimpl(?:e|es|ed|ing)|puckers?|puckered|puckering",
    "bunch": r"bunch(?:es|ed|ing)?(?: up)?",
}

#: (face part, movement, claim): "AU01+AU02" claims both AUs; "AU26|AU25" either (primary first).
ACTIONS: List[Tuple[str, str, str]] = [
    ("brows", "raise", "AU01+AU02"),
    ("brows", "arch", "AU01+AU02"),
    ("brows", "up", "AU01+AU02"),
    ("inner_outer_brows", "raise", "AU01+AU02"),
    ("inner_brows", "raise", "AU01"),
    ("inner_brows", "up", "AU01"),
    ("outer_brows", "raise", "AU02"),
    ("outer_brows", "up", "AU02"),
    ("outer_brows", "arch", "AU02"),
    ("brows", "lower", "AU04"),
    ("brows", "furrow", "AU04"),
    ("brows", "together", "AU04"),
    ("brows", "contract", "AU04"),
    ("forehead", "wrinkle", "AU01|AU02|AU04"),
    ("forehead", "furrow", "AU01|AU02|AU04"),
    ("upper_lids", "raise", "AU05"),
    ("lids", "raise", "AU05"),
    ("eyes", "widen", "AU05"),
    ("cheeks", "raise", "AU06"),
    ("cheeks", "bunch", "AU06"),
    ("lids", "tighten", "AU07"),
    ("lower_lids", "tighten", "AU07"),
    ("lower_lids", "raise", "AU07"),
    ("lids", "narrow", "AU07"),
    ("eyes", "narrow", "AU07"),
    ("eyes", "tighten", "AU07"),
    ("nose", "wrinkle", "AU09"),
    ("upper_lip", "raise", "AU10"),
    ("upper_lip", "curl", "AU10"),
    ("lip_corners", "up", "AU12"),
    ("lip_corners", "pull", "AU12"),
    ("mouth", "up", "AU12"),
    ("lip_corners", "tighten", "AU23|AU14"),  # "lip corner depression, stretching and tightening": the lips
    ("lip_corners", "dimple", "AU14"),
    ("lip_corners", "down", "AU15"),
    ("mouth", "down", "AU15"),
    ("chin", "raise", "AU17"),
    ("chin", "wrinkle", "AU17"),
    ("chin", "dimple", "AU17"),
    ("lips", "stretch", "AU20"),
    ("lip_corners", "stretch", "AU20"),
    ("mouth", "stretch", "AU20"),
    ("lips", "tighten", "AU23"),
    ("lips", "press", "AU23"),
    ("lips", "part", "AU25"),
    ("jaw", "drop", "AU26"),
    ("mouth", "open", "AU26|AU25"),
    ("lips", "suck", "AU28"),
    ("lids", "close", "AU45"),
    ("eyes", "close", "AU45"),
]

#: Fixed words and phrases (everyday words, muscle names, AU codes are handled separately).
PHRASES: List[Tuple[str, str]] = [
    (r"smil(?:e|es|ed|ing)|grin(?:s|ned|ning)?", "AU12"),
    (r"smirk(?:s|ed|ing)?", "AU12|AU14"),
    (r"duchenne", "AU06"),
    (r"duchenne smil(?:e|es|ing)", "AU06+AU12"),
    (r"frown(?:s|ed|ing)?|scowl(?:s|ed|ing)?|corrugator(?: supercilii)?", "AU04"),
    (r"crow'?s? feet", "AU06"),
    (r"squint(?:s|ed|ing)?", "AU07"),
    (r"wide eyed", "AU05"),
    (r"levator palpebrae(?: superioris)?", "AU05"),
    (r"levator labii superioris alaeque nasi", "AU09"),
    (r"sneer(?:s|ed|ing)?|levator labii(?: superioris)?", "AU10"),
    (r"zygomatic(?:us)?(?: major)?", "AU12"),
    (r"dimpl(?:e|es|ed|er|ers|ing)|buccinator", "AU14"),
    (r"depressor anguli oris", "AU15"),
    (r"mentalis", "AU17"),
    (r"risorius", "AU20"),
    (r"blink(?:s|ed|ing)?", "AU45"),
    (r"orbicularis oculi", "AU06|AU07|AU45"),
    (r"frontalis", "AU01|AU02"),
]

#: Words that may stand between a face part and its movement ("brows are not visibly raised").
_BETWEEN_NOUN_VERB = (r"is|are|was|were|be|being|been|has|have|had|appears?|appeared|seems?|seemed|remains?|"
                      r"remained|looks?|stays?|becomes?|became|gets?|got|to|not|no longer|also|both|still|very|quite|"
                      r"more|less|further|even|a bit|a little|somewhat|\w+ly")
#: Words that may stand between a movement and its face part ("raising of the brows", "slightly parted lips").
_BETWEEN_VERB_NOUN = r"the|a|an|his|her|their|its|both|of|very|quite|more|less|\w+ly"
#: How listed movements are joined ("lip stretching, and tightening", "lowered, drawn-together brows").
_JOIN = r"(?:,|,? and|,? or|,? as well as|,? and not)"

# ------------------------------------------------------------------------------------------- negation

#: A negation cue: everything after it to the end of its clause is negated.
_NEGATION = re.compile(r"\b(?:no|not|never|without|neither|nor|none|nothing|absence of|absent|lack(?:s|ing)?(?: of)?|"
                       r"free of|devoid of|rather than|instead of)\b")
#: A negation after the mention ("a smile is absent", "the smile does not appear").
_POST_NEGATION = re.compile(r"(?:\s(?:is|are|was|were|remains?|remained|appears?|seems?|does|do|did|has|have|had|"
                            r"stays?)){0,2}(?:\s\w+ly)?\s(?:absent|missing|not|never|no longer|lacking)\b")
#: Where a clause (and so a negation's scope) ends. Commas are handled separately (see ``fidelity._negated_spans``).
_CLAUSE_END = re.compile(
    r"[.;:!?()\[\]{}\"]"
    r"|\s(?:but|while|whilst|whereas|although|though|yet|however|except|unlike|apart from|aside from)\b"
    r"|,?\s(?:with|alongside|accompanied by|along with|together with|combined with|coupled with|plus|as well as)\b"
    r"|,?\sand\s(?=(?:the|a|an|his|her|their|its|there|it|this|that|they|he|she|one|some|slight|\w+ly)\b)"
)
_OR_LIST = re.compile(r"\b(?:or|nor)\b")
_COMMA = re.compile(",")

_AU_CODE = re.compile(r"\bau ?0?(\d{1,2})(?:_[rc])?\b")


# ---------------------------------------------------------------------------------------------- patterns


def _parse_claims(spec: str) -> Tuple[Claim, ...]:
    claims = tuple(tuple(alt.strip() for alt in part.split("|")) for part in spec.split("+"))
    for claim in claims:
        for code in claim:
            if code not in AU_NAMES:
                raise ValueError(f"lexicon names an unknown AU {code!r} in {spec!r}")
    return claims


@functools.lru_cache(maxsize=None)
def _compiled():
    """Compile the tables once: fixed phrases; per face part a pattern for the part and one for any of its
    movements (to find where an action can start); per action a part-first and a movement-first pattern."""
    phrases = [(re.compile(rf"\b(?:{p})\b"), _parse_claims(spec)) for p, spec in PHRASES]
    verbs_of: Dict[str, List[str]] = collections.defaultdict(list)
    for noun, verb, _ in ACTIONS:
        verbs_of[noun].append(VERBS[verb])
    starts = {noun: (re.compile(rf"\b(?:{NOUNS[noun]})\b"), re.compile(rf"\b(?:{'|'.join(verbs)})\b"))
              for noun, verbs in verbs_of.items()}
    item = r"(?:\s(?:not|\w+ly)){0,2}"
    actions = []
    for noun, verb, spec in ACTIONS:
        n, v, any_v = NOUNS[noun], VERBS[verb], "|".join(verbs_of[noun])
        noun_first = re.compile(rf"(?P<n>{n})(?:\s(?:{_BETWEEN_NOUN_VERB})){{0,4}}"
                                rf"(?:\s(?:{any_v}){_JOIN}{item}){{0,3}}\s(?P<v>{v})\b")
        verb_first = re.compile(rf"(?:(?:{any_v}){_JOIN}{item}\s){{0,3}}(?P<v>{v})"
                                rf"(?:{_JOIN}{item}\s(?:{any_v})){{0,3}}"
                                rf"(?:\s(?:{_BETWEEN_VERB_NOUN})){{0,3}}\s(?P<n>{n})\b")
        actions.append((noun, noun_first, verb_first, _parse_claims(spec)))
    return phrases, starts, actions
