"""AU fidelity: which Action Units a description mentions, scored against the AUs its input made active.

A teacher (GPT-4o, Gemini) or a trained agent may describe movements that the AU input does not contain
(hallucination) or leave active AUs out (omission). This module finds AU *mentions* in free English text with a
lexicon, and scores them per record and per corpus:

    mentioned_aus("Faint brow lowering, no smile, lips slightly apart.")   → {"AU04", "AU25"}
    fidelity(text, contract.parse_input("AU04: 1.20, AU07: 0.95"))   → precision, recall, F1, hallucinated, missed

The lexicon is data, not code: ``NOUNS`` (face parts), ``VERBS`` (movements, every word form), ``ACTIONS`` (which
noun + movement is which AU) and ``PHRASES`` (fixed words: "smile", "frown", "crow's feet", muscle names, "AU12").
A small matcher combines them in both orders ("raised brows", "brows are raised", "brow raise", "raising of the
brows"), follows lists ("lip stretching and tightening"), prefers the longest reading ("lip corners pulled down"
is AU15, not AU12), and drops mentions under a negation ("no smile", "brows are not lowered", "neither brow
lowering nor lip tightening", "absence of lip tightening", "a smile is absent"). A negation reaches to the next
comma or clause boundary (punctuation, "but", "while", "with", "and the …").

A claim may name alternatives, primary first: ``"AU26|AU25"`` (an open mouth) is correct when either AU is active
and counts as the primary when neither is. ``"AU01+AU02"`` (raised brows) claims both AUs.

Precision limits (what a lexicon cannot see): paraphrases outside the table are missed ("chin muscle
activation"); "no smile and raised brows" negates both, "the smile does not reach the eyes" negates the smile,
and a comma list is negated only when it ends in or/nor; hedges ("perhaps a slight smile") and comparisons
("less furrowed than before") count as mentions; muscle names count where they point to one AU or a few
alternatives (orbicularis oculi: AU06, AU07 or AU45; orbicularis oris is ignored); "pressed lips" (AU24, which
OpenFace 2.x lacks) counts as AU23. Scores compare sets, not intensities. On the prior AU-Agent build's public
validation set (1,608 GPT-4o frame descriptions) it finds 11.3 % of mentioned AUs inactive (the reference's "one
in eight"); in a manual check, 30 of 30 sampled hallucination readings and 25 of 25 sampled negations were right.

This module must stay light: ``prepare-data --min-fidelity`` imports it, and so does evaluation.
"""
from __future__ import annotations

import bisect
import collections
import functools
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import contract
from .errors import AUAgentError
from .facs import AU_NAMES, normalize_code, sort_codes

#: Bump when the lexicon or the matcher changes what is counted (reports record it).
LEXICON_VERSION = "au-lexicon-2"

Claim = Tuple[str, ...]  # alternative AU codes, primary first
Active = Union[Mapping[str, float], Iterable[str]]

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
#: Where a clause (and so a negation's scope) ends. Commas are handled separately (see ``_negated_spans``).
_CLAUSE_END = re.compile(
    r"[.;:!?()\[\]{}\"]"
    r"|\s(?:but|while|whilst|whereas|although|though|yet|however|except|unlike|apart from|aside from)\b"
    r"|,?\s(?:with|alongside|accompanied by|along with|together with|combined with|coupled with|plus|as well as)\b"
    r"|,?\sand\s(?=(?:the|a|an|his|her|their|its|there|it|this|that|they|he|she|one|some|slight|\w+ly)\b)"
)
_OR_LIST = re.compile(r"\b(?:or|nor)\b")
_COMMA = re.compile(",")

_AU_CODE = re.compile(r"\bau ?0?(\d{1,2})(?:_[rc])?\b")


# ------------------------------------------------------------------------------------------------ matcher


@dataclass(frozen=True)
class Mention:
    """One AU mention found in a text (positions index the normalised text)."""

    phrase: str
    claims: Tuple[Claim, ...]
    negated: bool
    start: int
    end: int

    @property
    def aus(self) -> Tuple[str, ...]:
        """The primary AU of each claim."""
        return tuple(c[0] for c in self.claims)


@dataclass(frozen=True)
class _Candidate:
    start: int
    end: int
    core: Tuple[Tuple[int, int], ...]  # the spans that decide overlaps: face part and the movement itself
    head: Tuple[int, int]  # the movement (or the fixed phrase)
    claims: Tuple[Claim, ...]

    @property
    def weight(self) -> int:
        return sum(e - s for s, e in self.core)


def _parse_claims(spec: str) -> Tuple[Claim, ...]:
    claims = tuple(tuple(alt.strip() for alt in part.split("|")) for part in spec.split("+"))
    for claim in claims:
        for code in claim:
            if code not in AU_NAMES:
                raise ValueError(f"lexicon names an unknown AU {code!r} in {spec!r}")
    return claims


def normalize(text: str) -> str:
    """The text the lexicon is matched against (see the comment above ``NOUNS``)."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\bcannot\b", "can not", t)
    t = re.sub(r"n't\b", " not", t)
    t = re.sub(r"(?<=\w)[-\u2010\u2011\u2012\u2013](?=\w)", " ", t)
    return " ".join(t.split())


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


def _candidates(norm: str) -> List[_Candidate]:
    """Every reading of ``norm``; overlapping readings are resolved later. Action patterns are only tried where a
    face part or one of its movements starts, which keeps the matcher fast (most texts name few parts)."""
    phrases, starts, actions = _compiled()
    found: List[_Candidate] = []
    for pattern, claims in phrases:
        for m in pattern.finditer(norm):
            found.append(_Candidate(m.start(), m.end(), (m.span(),), m.span(), claims))
    positions = {}
    for noun, (noun_re, verb_re) in starts.items():
        nouns = [m.start() for m in noun_re.finditer(norm)]
        positions[noun] = (nouns, [m.start() for m in verb_re.finditer(norm)] if nouns else [])
    for noun, noun_first, verb_first, claims in actions:
        noun_starts, verb_starts = positions[noun]
        for pattern, at in ((noun_first, noun_starts), (verb_first, verb_starts)):
            for pos in at:
                m = pattern.match(norm, pos)
                if m:
                    found.append(_Candidate(m.start(), m.end(), (m.span("n"), m.span("v")), m.span("v"), claims))
    for m in _AU_CODE.finditer(norm):
        code = f"AU{int(m.group(1)):02d}"
        if code in AU_NAMES:
            found.append(_Candidate(m.start(), m.end(), (m.span(),), m.span(), ((code,),)))
    return found


def _resolve(cands: List[_Candidate]) -> List[_Candidate]:
    """Keep the most specific reading where two readings claim the same movement words (longest core first)."""
    kept: List[_Candidate] = []
    taken = bytearray(max((c.head[1] for c in cands), default=0))  # 1 where a kept head lies (kept heads never overlap)
    for c in sorted(set(cands), key=lambda c: (-c.weight, c.start, c.end)):
        s, e = c.head
        if taken.find(1, s, e) < 0:  # heads are never empty: every movement and phrase pattern needs a word
            taken[s:e] = b"\x01" * (e - s)
            kept.append(c)
    return sorted(kept, key=lambda c: (c.start, c.end))


def _clauses(norm: str) -> Iterator[Tuple[int, int]]:
    start = 0
    for m in _CLAUSE_END.finditer(norm):
        yield start, m.start()
        start = m.end()
    yield start, len(norm)


def _negated_spans(norm: str) -> List[Tuple[int, int]]:
    """``[start, end)`` ranges under a negation: from the cue to the next comma or clause end, or through a short
    comma list that ends in or/nor ("no brow raise, lip press, or smile"). Linear in the text's length."""
    spans = []
    for a, b in _clauses(norm):
        cuts = [a] + [m.end() for m in _COMMA.finditer(norm, a, b)] + [b + 1]
        segments = [(cuts[k], cuts[k + 1] - 1) for k in range(len(cuts) - 1)]
        cues = [_NEGATION.search(norm, s, e) for s, e in segments]
        if not any(cues):
            continue
        # reach[k]: where a negation before segment k ends if the list goes on through segment k: at the first
        # following segment with or/nor, unless a segment of more than six words comes first (None).
        reach: List[Optional[int]] = [None] * (len(segments) + 1)
        for k in range(len(segments) - 1, -1, -1):
            s2, e2 = segments[k]
            if len(norm[s2:e2].split()) > 6:
                reach[k] = None
            elif _OR_LIST.search(norm, s2, e2):
                reach[k] = e2
            else:
                reach[k] = reach[k + 1]
        for i, (s, e) in enumerate(segments):
            if cues[i] is not None:
                spans.append((cues[i].start(), reach[i + 1] if reach[i + 1] is not None else e))
    return spans


class _Scopes:
    """Answers, for many positions of one text, "is it negated?" and "where does its clause end?" in about
    constant time each (a per-position answer by scanning would make long texts quadratic)."""

    def __init__(self, norm: str) -> None:
        self.norm = norm
        merged: List[List[int]] = []
        for s, e in sorted(_negated_spans(norm)):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]
        self._commas = [m.start() for m in _COMMA.finditer(norm)]
        self._searched = (1, 0)  # no clause end starts in [searched[0], searched[1]); searched[1] is one, or len

    def negated(self, pos: int) -> bool:
        i = bisect.bisect_right(self._starts, pos) - 1
        return i >= 0 and pos < self._ends[i]

    def clause_end(self, pos: int) -> int:
        """Where the clause (or comma segment) that ``pos`` is in ends."""
        lo, hi = self._searched
        if not lo <= pos <= hi:  # the first clause end at or after pos is the one found before, when pos is in range
            m = _CLAUSE_END.search(self.norm, pos)
            self._searched = lo, hi = pos, (m.start() if m else len(self.norm))
        k = bisect.bisect_left(self._commas, pos)
        return self._commas[k] if k < len(self._commas) and self._commas[k] < hi else hi


def find_mentions(text: str) -> List[Mention]:
    """Every AU mention in ``text``, negated ones included (with ``negated=True``), in text order."""
    norm = normalize(text)
    if not norm:
        return []
    scopes = _Scopes(norm)
    mentions = []
    for c in _resolve(_candidates(norm)):
        negated = scopes.negated(c.start) or scopes.negated(c.head[0])
        if not negated:
            negated = bool(_POST_NEGATION.match(norm, c.end, scopes.clause_end(c.end)))
        mentions.append(Mention(norm[c.start:c.end], c.claims, negated, c.start, c.end))
    return mentions


def mentioned_aus(text: str, active: Optional[Active] = None) -> Set[str]:
    """The AUs ``text`` says are present. With ``active``, a claim with alternatives resolves to an active one."""
    act = active_set(active) if active is not None else frozenset()
    found = set()
    for mention in find_mentions(text):
        if mention.negated:
            continue
        for claim in mention.claims:
            found.add(next((code for code in claim if code in act), claim[0]))
    return found


# ------------------------------------------------------------------------------------------------ scoring


def active_set(active: Active) -> frozenset:
    """Active AU codes from ``contract.parse_input``'s mapping (values above the threshold) or from codes."""
    if isinstance(active, Mapping):
        return frozenset(contract.active_aus(active))
    codes = set()
    for key in active:
        code = normalize_code(key)
        if code is None:
            raise AUAgentError(f"{key!r} is not an AU code")
        codes.add(code)
    return frozenset(codes)


def _ratio(num: int, den: int) -> float:
    """Empty denominators are vacuously perfect: mentioning nothing hallucinates nothing."""
    return num / den if den else 1.0


@dataclass(frozen=True)
class FidelityScore:
    """Mentioned vs active AUs of one description."""

    mentioned: frozenset
    active: frozenset

    @property
    def hallucinated(self) -> frozenset:
        return self.mentioned - self.active

    @property
    def missed(self) -> frozenset:
        return self.active - self.mentioned

    @property
    def correct(self) -> frozenset:
        return self.mentioned & self.active

    @property
    def precision(self) -> float:
        return _ratio(len(self.correct), len(self.mentioned))

    @property
    def recall(self) -> float:
        return _ratio(len(self.correct), len(self.active))

    @property
    def f1(self) -> float:
        return _ratio(2 * len(self.correct), len(self.mentioned) + len(self.active))


def fidelity(text: str, active: Active) -> FidelityScore:
    """Score ``text`` against the active AUs of its input (``contract.parse_input(record.input)`` or codes)."""
    act = active_set(active)
    return FidelityScore(frozenset(mentioned_aus(text, act)), act)


class FidelityTally:
    """Corpus-level fidelity: micro precision/recall/F1, hallucination and omission rates, a per-AU table."""

    def __init__(self) -> None:
        self.scores: List[FidelityScore] = []

    def add(self, score: FidelityScore) -> FidelityScore:
        self.scores.append(score)
        return score

    def summary(self, per_au: bool = True) -> Dict[str, object]:
        tp = sum(len(s.correct) for s in self.scores)
        mentioned = sum(len(s.mentioned) for s in self.scores)
        active = sum(len(s.active) for s in self.scores)
        n = len(self.scores)
        f1s = [s.f1 for s in self.scores]
        out: Dict[str, object] = {
            "records": n,
            "precision": _round(_ratio(tp, mentioned)),
            "recall": _round(_ratio(tp, active)),
            "f1": _round(_ratio(2 * tp, mentioned + active)),
            "mean_record_f1": _round(sum(f1s) / n) if n else 1.0,
            # AUs mentioned but not active, over AUs mentioned; AUs active but not mentioned, over AUs active.
            "hallucination_rate": _round(1.0 - _ratio(tp, mentioned)),
            "omission_rate": _round(1.0 - _ratio(tp, active)),
            "aus_mentioned": mentioned,
            "aus_active": active,
            "hallucinated": mentioned - tp,
            "missed": active - tp,
            "records_with_hallucination": sum(bool(s.hallucinated) for s in self.scores),
            "records_with_omission": sum(bool(s.missed) for s in self.scores),
            "record_f1_histogram": f1_histogram(f1s),
        }
        if per_au:
            out["per_au"] = self._per_au()
        return out

    def _per_au(self) -> Dict[str, Dict[str, object]]:
        counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for s in self.scores:
            for code in s.active:
                counts[code]["active"] += 1
            for code in s.mentioned:
                counts[code]["mentioned"] += 1
            for code in s.correct:
                counts[code]["correct"] += 1
        table = {}
        for code in sort_codes(counts):
            c = counts[code]
            table[code] = {
                "active": c["active"], "mentioned": c["mentioned"], "correct": c["correct"],
                "hallucinated": c["mentioned"] - c["correct"], "missed": c["active"] - c["correct"],
                "precision": _round(_ratio(c["correct"], c["mentioned"])),
                "recall": _round(_ratio(c["correct"], c["active"])),
                "f1": _round(_ratio(2 * c["correct"], c["mentioned"] + c["active"])),
            }
        return table


#: Lower edges of the record-F1 histogram; the last bin holds exactly 1.0.
HISTOGRAM_EDGES = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def f1_histogram(f1s: Sequence[float]) -> Dict[str, int]:
    """Records per F1 bin, keyed by the bin's lower edge ("0.8" holds 0.8 ≤ F1 < 0.9; "1.0" holds F1 = 1)."""
    counts = [0] * len(HISTOGRAM_EDGES)
    for f in f1s:
        counts[bisect.bisect_right(HISTOGRAM_EDGES, f + 1e-9) - 1] += 1
    return {f"{edge:.1f}": k for edge, k in zip(HISTOGRAM_EDGES, counts)}


def _round(x: float) -> float:
    return round(x, 4)


def corpus_fidelity(pairs: Iterable[Tuple[str, Active]], per_au: bool = True) -> Dict[str, object]:
    """``FidelityTally`` summary of ``(description, active AUs)`` pairs, e.g. a dataset's ``(output, input)``."""
    tally = FidelityTally()
    for text, active in pairs:
        tally.add(fidelity(text, active))
    return tally.summary(per_au)


def summary_line(summary: Mapping[str, object]) -> str:
    """One Markdown sentence for a stats report."""
    return (f"AU fidelity of the descriptions (lexicon `{LEXICON_VERSION}`): precision {summary['precision']:.3f}, "
            f"recall {summary['recall']:.3f}, F1 {summary['f1']:.3f}; {summary['hallucinated']} of "
            f"{summary['aus_mentioned']} AU mentions name an inactive AU (hallucination rate "
            f"{summary['hallucination_rate']:.3f}), {summary['missed']} of {summary['aus_active']} active AUs "
            f"are not mentioned.")
