"""AU fidelity: which Action Units a description mentions, scored against the AUs its input made active.

A teacher (GPT-4o, Gemini) or a trained agent may describe movements that the AU input does not contain
(hallucination) or leave active AUs out (omission). This module finds AU *mentions* in free English text with a
lexicon, and scores them per record and per corpus:

    mentioned_aus("Faint brow lowering, no smile, lips slightly apart.")   → {"AU04", "AU25"}
    fidelity(text, contract.parse_input("AU04: 1.20, AU07: 0.95"))   → precision, recall, F1, hallucinated, missed

The lexicon is data, not code (:mod:`.fidelity_lexicon`): ``NOUNS`` (face parts), ``VERBS`` (movements, every
word form), ``ACTIONS`` (which noun + movement is which AU) and ``PHRASES`` (fixed words: "smile", "frown", "crow's
feet", muscle names, "AU12").
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
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import contract
from .errors import AUAgentError
from .facs import AU_NAMES, normalize_code, sort_codes
from .fidelity_lexicon import _AU_CODE, _CLAUSE_END, _COMMA, _NEGATION, _OR_LIST, _POST_NEGATION, Claim, _compiled

#: Bump when the lexicon or the matcher changes what is counted (reports record it).
LEXICON_VERSION = "au-lexicon-2"

Active = Union[Mapping[str, float], Iterable[str]]


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


def normalize(text: str) -> str:
    """The text the lexicon is matched against (see the comment above ``fidelity_lexicon.NOUNS``)."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\bcannot\b", "can not", t)
    t = re.sub(r"n't\b", " not", t)
    t = re.sub(r"(?<=\w)[-\u2010\u2011\u2012\u2013](?=\w)", " ", t)
    return " ".join(t.split())


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
            cue, end = cues[i], reach[i + 1]
            if cue is not None:
                spans.append((cue.start(), end if end is not None else e))
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
        table: Dict[str, Dict[str, object]] = {}
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
