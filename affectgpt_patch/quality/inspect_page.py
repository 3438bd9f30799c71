"""``au-agent inspect``: one self-contained HTML page to look at a corpus's AUs, chosen frames and descriptions.

    au-agent inspect features/ --openface-dir openface/       → features/report.html
    au-agent inspect descriptions.jsonl                        → descriptions.html
    au-agent inspect eval_out/                                 → eval_out/report.html

The page needs no server and no network: charts and heatmaps are inline SVG, the styles inline, and one small
inline script adds hover read-outs. Every text from the data is HTML-escaped. The file is written atomically
and only after every input has been read and checked, so a bad input leaves no partial page.
"""
from __future__ import annotations

import bisect
import html
import logging
import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from au_core import atomic, contract, fidelity
from au_core.facs import AU_NAMES

from .inspect_data import load_corpus
from .inspect_options import InspectOptions
from .inspect_views import Corpus, EvalView, FrameRow, Heatmap, VideoView

log = logging.getLogger(__name__)

THRESHOLD = contract.ACTIVE_THRESHOLD
#: Upper edges of the colour levels above the threshold (the last level is open).
ACTIVE_EDGES = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
INACTIVE_COLORS = ("#f4f5f7", "#e2e5e9", "#c8cdd3")  # (0, t/3], (t/3, 2t/3], (2t/3, t]
ACTIVE_COLORS = ("#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026")
UNKNOWN_COLOR = "#fbfbfd"
LABEL_W, ROW_H, TOP = 196, 11, 20
#: In every page: the sign that a file is a page of this command, which a later run may replace (pages
#: made before it start with LEGACY_HEAD). Any other existing file at the output path is refused.
GENERATOR = '<meta name="generator" content="au-agent inspect">'
LEGACY_HEAD = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
               'content="width=device-width, initial-scale=1"><title>AU ')
HEATMAP_W = 960  # pixels for the frame columns at most
TICKED_COLUMNS = 40  # up to this many columns, each is labelled with its frame number


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def code_label(code: str) -> str:
    return f"{code} {AU_NAMES.get(code, '')}".strip()


# ------------------------------------------------------------------------------------------------ heatmap


def cell_levels(values: np.ndarray) -> np.ndarray:
    """Colour class per cell: ``u`` unknown, ``i0``–``i2`` at or below the threshold, ``a0``–``a6`` above it
    (active exactly as the contract decides: rounded to 2 decimals, then strictly above)."""
    # Rounded as contract.active_aus rounds (decimal formatting; np.round differs on ties such as 0.805).
    rounded = np.array([float(f"{v:.2f}") for v in values.ravel().tolist()]).reshape(values.shape)
    out = np.full(values.shape, "u", dtype=object)
    known = ~np.isnan(values)
    active = known & (rounded > THRESHOLD)
    inactive = known & ~active
    out[inactive] = np.array(["i0", "i1", "i2"])[np.clip(np.ceil(values[inactive] / (THRESHOLD / 3)) - 1, 0, 2)
                                                  .astype(int)]
    out[active] = [f"a{bisect.bisect_left(ACTIVE_EDGES, v)}" for v in values[active].tolist()]
    return out


def _runs(flags: Sequence[bool]) -> Iterable[Tuple[int, int]]:
    start = None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            yield start, i
            start = None


def _cells(levels: Sequence[str]) -> Iterable[Tuple[int, int]]:
    """(first column, columns) of each drawn cell of a row: every active cell alone, so it keeps its exact value;
    runs of one inactive or unknown level as one cell, which keeps the page small (most cells are inactive)."""
    c, cols = 0, len(levels)
    while c < cols:
        n = 1
        if levels[c][0] != "a":
            while c + n < cols and levels[c + n] == levels[c]:
                n += 1
        yield c, n
        c += n


def heatmap_svg(h: Heatmap) -> str:
    """AU rows × frame columns as SVG: a ``rect.c`` per active cell and per run of inactive cells, invalid
    columns shaded, chosen frames marked; a cell's ``data-v`` is its intensity, ``data-n`` the columns of a run."""
    rows, cols = h.values.shape
    cw = max(2.0, min(24.0 if cols <= TICKED_COLUMNS else 14.0, HEATMAP_W / max(cols, 1)))
    cw = math.floor(cw * 4) / 4
    width = LABEL_W + cols * cw + 8
    height = TOP + rows * ROW_H + 16
    labels = " ".join(str(a) if a == b else f"{a}-{b}" for a, b in h.columns)
    levels = cell_levels(h.values)
    out = [f'<svg class="heat" width="{width:g}" height="{height}" viewBox="0 0 {width:g} {height}" '
           f'data-cw="{cw:g}" data-cols="{esc(labels)}" role="img" '
           f'aria-label="AU intensity heatmap">']
    for r, code in enumerate(h.au_codes):
        y = TOP + r * ROW_H
        out.append(f'<text class="lab" x="{LABEL_W - 6}" y="{y + ROW_H - 2}">{esc(code_label(code))}</text>')
        out.append(f'<g data-au="{esc(code_label(code))}" transform="translate({LABEL_W} {y})">')
        for c, n in _cells(levels[r]):  # y defaults to 0 inside the row's group
            level = levels[r, c]
            if n == 1 and level[0] == "a":
                extra = f' data-v="{h.values[r, c]:.2f}"'
            else:
                extra = f' data-n="{n}"' if n > 1 else ""
            out.append(f'<rect class="c {level}" x="{c * cw:g}" width="{n * cw:g}" height="{ROW_H - 1}"{extra}/>')
        out.append("</g>")
    body_h = rows * ROW_H
    for a, b in _runs(h.invalid):
        out.append(f'<rect class="inv" x="{LABEL_W + a * cw:g}" y="{TOP}" width="{(b - a) * cw:g}" '
                   f'height="{body_h}"><title>frames {h.columns[a][0]}–{h.columns[b - 1][1]}: no valid face '
                   f'(never described)</title></rect>')
    for c, slots in sorted(h.chosen.items()):
        x = LABEL_W + c * cw
        out.append(f'<rect class="pickcol" x="{x:g}" y="{TOP - 1}" width="{cw:g}" height="{body_h + 1}"/>')
        mid = x + cw / 2
        what = ", ".join(f"slot {slot}: frame {frame}" for slot, frame in slots)
        out.append(f'<path class="pick" d="M{mid - 4:g} {TOP - 10}h8l-4 7z"><title>{what}</title></path>')
    if cols <= TICKED_COLUMNS:  # few columns (the chosen frames alone): every frame number under its column
        for c, (a, _) in enumerate(h.columns):
            out.append(f'<text class="axis mid" x="{LABEL_W + (c + 0.5) * cw:g}" y="{height - 3}">{a}</text>')
    elif h.columns:
        out.append(f'<text class="axis" x="{LABEL_W}" y="{height - 3}">frame {h.columns[0][0]}</text>')
        out.append(f'<text class="axis end" x="{LABEL_W + cols * cw:g}" y="{height - 3}">frame '
                   f'{h.columns[-1][1]}</text>')
    out.append("</svg>")
    return "".join(out)


def legend_svg() -> str:
    """The colour scale with the activation threshold marked."""
    sw, x0 = 34, 10
    parts = ['<svg class="legend" width="560" height="52" role="img" aria-label="colour scale">']
    bounds = [0.0, THRESHOLD / 3, 2 * THRESHOLD / 3, THRESHOLD, *ACTIVE_EDGES, 5.0]
    colors = list(INACTIVE_COLORS) + list(ACTIVE_COLORS)
    for i, color in enumerate(colors):
        parts.append(f'<rect x="{x0 + i * sw}" y="16" width="{sw}" height="14" fill="{color}"/>')
    for i, b in enumerate(bounds):
        if 0 < i < 3:  # the grey steps below the threshold are not labelled
            continue
        parts.append(f'<text x="{x0 + i * sw}" y="44" class="tick mid">{b:g}{"+" if i == len(bounds) - 1 else ""}'
                     '</text>')
    tx = x0 + 3 * sw
    parts.append(f'<line class="thr" x1="{tx}" x2="{tx}" y1="4" y2="34"/>')
    parts.append(f'<text x="{tx + 4}" y="11" class="tick thr-label">active above {THRESHOLD:g} (contract)</text>')
    ux = x0 + len(colors) * sw + 16
    parts.append(f'<rect x="{ux}" y="16" width="14" height="14" fill="{UNKNOWN_COLOR}" stroke="#ccc"/>'
                 f'<text x="{ux + 18}" y="27" class="tick">≤ {THRESHOLD:g}, value unknown</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ charts


def bar_chart(rows: Sequence[Tuple[str, float, str]], width: int = 460) -> str:
    """Horizontal bars: (label, share 0–1, value text)."""
    lw, bh = 200, 16
    h = len(rows) * bh + 4
    out = [f'<svg class="chart" width="{width}" height="{h}" role="img">']
    for i, (label, share, text) in enumerate(rows):
        y = i * bh + 2
        w = max(0.0, min(1.0, share)) * (width - lw - 80)
        out.append(f'<text class="lab" x="{lw - 6}" y="{y + 11}">{esc(label)}</text>'
                   f'<rect class="bar" x="{lw}" y="{y + 2}" width="{w:.1f}" height="{bh - 5}"/>'
                   f'<text class="val" x="{lw + w + 4:.1f}" y="{y + 11}">{esc(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(bins: Sequence[Tuple[str, int]], title: str, width: int = 300) -> str:
    """Vertical bars with a label under each bin and its count above."""
    h, top, bottom = 150, 18, 30
    n = max(1, len(bins))
    bw = (width - 10) / n
    peak = max([c for _, c in bins] + [1])
    out = [f'<figure class="hist"><svg class="chart" width="{width}" height="{h}" role="img">']
    for i, (label, count) in enumerate(bins):
        bh = (h - top - bottom) * count / peak
        x = 5 + i * bw
        out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{h - bottom - bh:.1f}" width="{bw - 2:.1f}" '
                   f'height="{bh:.1f}"><title>{esc(label)}: {count}</title></rect>')
        if count:
            out.append(f'<text class="val mid" x="{x + bw / 2:.1f}" y="{h - bottom - bh - 3:.1f}">{count}</text>')
        if n <= 12 or i % math.ceil(n / 12) == 0:
            out.append(f'<text class="tick mid" x="{x + bw / 2:.1f}" y="{h - bottom + 12}">{esc(label)}</text>')
    out.append(f'</svg><figcaption>{esc(title)}</figcaption></figure>')
    return "".join(out)


def word_bins(words: Sequence[int]) -> List[Tuple[str, int]]:
    """Counts in at most 16 bins of equal width, labelled by their lower edge."""
    if not words:
        return []
    top = max(words)
    step = max(1, math.ceil((top + 1) / 16))
    edges = range(0, top + step, step)
    counts = [0] * len(edges)
    for w in words:
        counts[w // step] += 1
    return [(str(e), c) for e, c in zip(edges, counts)]


def table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    thead = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>" if any(head) else ""
    out = [f'<table class="{cls}">{thead}<tbody>']
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</tbody></table>"


# ------------------------------------------------------------------------------------------------ fidelity


def input_html(input_str: Optional[str], score: Optional[fidelity.FidelityScore]) -> str:
    """The input string, each AU with its FACS name on hover; AUs the description leaves out marked."""
    if input_str is None:
        return '<span class="muted">—</span>'
    if contract.is_neutral(input_str):
        return f'<code>{esc(input_str)}</code>'
    items = []
    for item in input_str.split(", "):
        code = item.partition(":")[0]
        missed = score is not None and code in score.missed
        cls = ' class="miss"' if missed else ""
        note = " — not mentioned by the description" if missed else ""
        items.append(f'<span{cls} title="{esc(AU_NAMES.get(code, code) + note)}">{esc(item)}</span>')
    return "<code>" + ", ".join(items) + "</code>"


def score_html(score: Optional[fidelity.FidelityScore]) -> str:
    if score is None:
        return '<span class="muted">no check</span>'
    cls = "ok" if score.f1 >= 0.999 else "warn" if score.f1 >= 0.5 else "bad"
    parts = [f'<span class="f1 {cls}">F1 {score.f1:.2f}</span>']
    for code in sorted(score.hallucinated):
        parts.append(f'<span class="hal" title="{esc(AU_NAMES.get(code, code))}: mentioned but not active">'
                     f'+{esc(code)} hallucinated</span>')
    for code in sorted(score.missed):
        parts.append(f'<span class="mis" title="{esc(AU_NAMES.get(code, code))}: active but not mentioned">'
                     f'−{esc(code)} omitted</span>')
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ sections


def summary_html(c: Corpus) -> str:
    """Counts, failures by reason, AU activation, description lengths and fidelity, fingerprints: all videos."""
    out = ['<section id="summary"><h2>Corpus summary</h2><div class="grid"><div>']
    out.append(table(["", ""], [(esc(k), esc(v)) for k, v in c.counts], "kv"))
    if c.problems:
        what = "failed videos by reason" if c.kind == "features" else "masked frames by reason"
        out.append(f"<h3>{esc(what)}</h3>" + table(["reason", "count"], [
            (esc(r), str(n)) for r, n in c.problems.items()], "kv"))
    if c.failed:
        shown = c.failed[:200]
        more = f"<p class='muted'>… and {len(c.failed) - len(shown)} more in failures.jsonl</p>" \
            if len(c.failed) > len(shown) else ""
        out.append(f"<details><summary>{len(c.failed)} failed videos</summary>" + table(
            ["video", "reason"], [(esc(n), esc(r)) for n, r in shown]) + more + "</details>")
    out.append("<h3>Agent, CLIP and settings</h3>" + table(["", ""], [(esc(k), f"<code>{esc(v)}</code>")
                                                                      for k, v in c.settings], "kv"))
    where = {"features": "chosen frames (what AffectGPT sees)", "descriptions": "valid frames",
             "eval": "records"}[c.kind]
    out.append(f'</div><div><h3>AU activation: share of the {c.au_frames} {esc(where)} with the AU above '
               f'{THRESHOLD:g}</h3>')
    out.append(bar_chart([(code_label(code), n / c.au_frames if c.au_frames else 0.0,
                           f"{100 * n / c.au_frames if c.au_frames else 0:.1f} % ({n})")
                          for code, n in c.au_active.items()]) + "</div></div>")
    if c.eval_report is not None:
        from .eval_report import summary_rows

        rows = summary_rows(c.eval_report)
        out.append("<h3>Agent vs teacher vs rules (report.json)</h3>" + table(
            [esc(h) for h in rows[0]], ([esc(x) for x in r] for r in rows[1:]), "num"))
    out.append("<h3>Descriptions: AU fidelity and length</h3>")
    fid_rows = []
    for system, s in c.fidelity.items():
        fid_rows.append([esc(system), str(s["records"]), f"{s['precision']:.3f}", f"{s['recall']:.3f}",
                         f"{s['f1']:.3f}", f"{s['hallucination_rate']:.3f}", f"{s['omission_rate']:.3f}"])
    out.append(table(["system", "checked", "AU precision", "AU recall", "AU F1", "hallucination rate",
                      "omission rate"], fid_rows, "num"))
    out.append(f"<p class='muted'>AU fidelity: the AUs a description mentions ({esc(fidelity.LEXICON_VERSION)}, "
               "au_core/fidelity.py) against the AUs active in its input; neutral and masked frames are not "
               "checked.</p><div class='hists'>")
    for system, s in c.fidelity.items():
        out.append(histogram(list(s["record_f1_histogram"].items()), f"{system}: AU F1 per description"))
    for system, words in c.words.items():
        mean = f", mean {sum(words) / len(words):.1f}" if words else ""
        out.append(histogram(word_bins(words), f"{system}: words per description{mean}"))
    out.append("</div>")
    return "".join(out) + "</section>"


def frame_rows_html(rows: Sequence[FrameRow]) -> str:
    body = []
    for r in rows:
        if r.masked is not None:
            body.append((str(r.slot), "—", f'<span class="muted">masked: {esc(r.masked)}</span>', "", ""))
            continue
        body.append((str(r.slot), esc(r.frame), input_html(r.input, r.score),
                     esc(r.description) if r.description is not None else '<span class="muted">—</span>',
                     score_html(r.score)))
    return table(["slot", "frame", "input string (what the agent saw)", "description", "AU fidelity"], body,
                 "frames")


def video_html(i: int, v: VideoView) -> str:
    worst = f", lowest AU F1 {v.worst_f1:.2f}" if v.worst_f1 is not None else ""
    masked_what = "slots masked" if len(v.rows) == v.total else "frames invalid"
    note = f'<p class="note">{esc(v.note)}</p>' if v.note else ""
    if v.caption is not None:
        note += f'<p class="caption"><b>AU caption</b> {esc(v.caption)}</p>'
    return (f'<section class="video" id="v{i}"><h3>{esc(v.name)}</h3>'
            f'<p class="muted">{v.masked} of {v.total} {masked_what}; {v.activity:.2f} active AUs per valid frame'
            f'{worst}. Heatmap from {esc(v.heatmap.source)}; ▼ marks the {len(v.rows)} chosen frames.</p>{note}'
            f'<div class="scroll">{heatmap_svg(v.heatmap)}</div>{frame_rows_html(v.rows)}</section>')


def eval_record_html(r: EvalView) -> str:
    where = esc(r.video) + (f", frame {r.frame}" if r.frame is not None else "") if r.video else ""
    cols = []
    for s in r.systems:
        cols.append(f'<div class="sys"><h4>{esc(s.label)}</h4><p>{esc(s.text)}</p>{score_html(s.score)}</div>')
    return (f'<section class="record" id="r{r.index}"><h3>record {r.index}'
            f'{" · " + where if where else ""}</h3><p>{input_html(r.input, r.systems[0].score)}</p>'
            f'<div class="side">{"".join(cols)}</div></section>')


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 24px 48px;color:#1d232b;
background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #dde1e6;padding-bottom:4px;
margin-top:28px}h3{font-size:15px;margin:18px 0 6px}h4{margin:0 0 4px;font-size:13px}
code{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}.muted{color:#6b7480}.note{color:#8a5a00}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #e3e6ea;padding:3px 8px;vertical-align:top;
text-align:left}th{background:#f5f7f9;font-weight:600}table.num td+td{text-align:right}
table.frames{width:100%;max-width:1400px}table.frames td:nth-child(4){max-width:560px}
.grid{display:flex;flex-wrap:wrap;gap:12px 40px}.grid>div{max-width:600px}
.hists{display:flex;flex-wrap:wrap;gap:8px 16px}
figure{margin:0}figcaption{font-size:12px;color:#4a525c;text-align:center}
.scroll{overflow-x:auto}section.video,section.record{border-top:1px solid #e3e6ea;padding-top:4px}
svg text{font:10px system-ui,sans-serif;fill:#39414a}svg .lab{text-anchor:end}svg .mid{text-anchor:middle}
svg .end{text-anchor:end}svg .axis{fill:#6b7480}.bar{fill:#4c78a8}
.c{shape-rendering:crispEdges}.u{fill:""" + UNKNOWN_COLOR + "}" + "".join(
    f".i{i}{{fill:{c}}}" for i, c in enumerate(INACTIVE_COLORS)) + "".join(
    f".a{i}{{fill:{c}}}" for i, c in enumerate(ACTIVE_COLORS)) + """
.inv{fill:#38404a;fill-opacity:.55}.pickcol{fill:none;stroke:#1f5fbf;stroke-width:1;pointer-events:none}
.pick{fill:#1f5fbf}.thr{stroke:#1d232b;stroke-width:2}.thr-label{font-weight:600}
.miss{background:#ffe3e0;text-decoration:underline wavy #c62828}
.hal,.mis,.f1{display:inline-block;border-radius:3px;padding:0 5px;margin:1px 2px;font-size:12px}
.hal{background:#fde2e1;color:#a11}.mis{background:#fff1d6;color:#8a5a00}.f1.ok{background:#e3f4e5}
.f1.warn{background:#fff1d6}.f1.bad{background:#fde2e1}
.side{display:grid;grid-template-columns:repeat(3,minmax(220px,1fr));gap:12px;max-width:1400px}
.sys{border:1px solid #e3e6ea;border-radius:4px;padding:6px 10px}.sys p{margin:0 0 6px}
#tip{position:fixed;display:none;background:#1d232b;color:#fff;padding:3px 7px;border-radius:3px;font-size:12px;
pointer-events:none;z-index:9}nav a{margin-right:12px}
"""

SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  var below = {u: "at most the threshold (not in the input string)", i0: "0 to THIRD", i1: "THIRD to TWO",
               i2: "TWO to THRESHOLD (inactive)"};
  document.addEventListener("mouseover", function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains("c")) { tip.style.display = "none"; return; }
    var svg = t.ownerSVGElement, cols = svg.getAttribute("data-cols").split(" ");
    var i = Math.round(parseFloat(t.getAttribute("x")) / parseFloat(svg.getAttribute("data-cw")));
    var n = parseInt(t.getAttribute("data-n") || "1", 10), v = t.getAttribute("data-v");
    var frames = n > 1 ? "frames " + cols[i].split("-")[0] + "-" + cols[i + n - 1].split("-").pop()
                       : "frame " + cols[i];
    tip.textContent = t.parentNode.getAttribute("data-au") + " \\u00b7 " + frames + " \\u00b7 " +
      (v !== null ? v : below[t.getAttribute("class").split(" ")[1]]);
    tip.style.display = "block";
  });
  document.addEventListener("mousemove", function (e) {
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
  });
  document.body.setAttribute("data-ready", "1");
})();
""".replace("THRESHOLD", f"{THRESHOLD:g}").replace("THIRD", f"{THRESHOLD / 3:.2f}").replace(
    "TWO", f"{2 * THRESHOLD / 3:.2f}")


def render(c: Corpus) -> str:
    """The whole page as one string."""
    title = {"features": "AU features", "descriptions": "AU descriptions", "eval": "AU Agent evaluation"}[c.kind]
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">', GENERATOR,
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}: {esc(c.source.name)}</title><style>{CSS}</style></head><body>",
             f'<h1>{esc(title)} · <code>{esc(c.source)}</code></h1>',
             '<nav><a href="#summary">summary</a>',
             '<a href="#videos">videos</a>' if c.kind != "eval" else '<a href="#records">records</a>', "</nav>",
             summary_html(c)]
    if c.kind == "eval":
        parts.append(f'<section id="records"><h2>Agent vs teacher vs rules: least faithful records</h2>'
                     f'<p class="muted">{esc(c.shown_note)}. Input AUs the agent leaves out are underlined.</p>')
        parts += [eval_record_html(r) for r in c.records]
    else:
        parts.append(f'<section id="videos"><h2>Videos</h2><p class="muted">{esc(c.shown_note)}. Rows: the '
                     f'{len(c.videos[0].heatmap.au_codes) if c.videos else 17} OpenFace AU intensities; columns: '
                     'frames (long videos in bins, each showing its maximum); shaded: frames without a valid face; '
                     'hover a cell for its value.</p>' + legend_svg())
        toc = " ".join(f'<a href="#v{i}">{esc(v.name)}</a>' for i, v in enumerate(c.videos))
        parts.append(f'<p class="toc">{toc}</p>')
        parts += [video_html(i, v) for i, v in enumerate(c.videos)]
    parts.append('</section><div id="tip"></div>')
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(parts)


def build_report(opts: InspectOptions) -> Tuple[Path, Corpus]:
    """Read the input, draw the page, write it atomically; return its path and what it shows. A file at the
    output path that is not an earlier page is refused first."""
    atomic.check_output_file(opts.out_path, "inspect", (GENERATOR.encode(), LEGACY_HEAD.encode()))
    corpus = load_corpus(opts)
    page = render(corpus)
    out = opts.out_path
    atomic.write_text(out, page)
    log.debug("%s: %d bytes", out, len(page.encode("utf-8")))
    return out, corpus
