"""``au-agent inspect``: one self-contained HTML page to look at a corpus's AUs, chosen frames and descriptions.

    au-agent inspect features/ --openface-dir openface/       → features/report.html
    au-agent inspect descriptions.jsonl                        → descriptions.html
    au-agent inspect eval_out/                                 → eval_out/report.html

The page needs no server and no network: charts and heatmaps are inline SVG (:mod:`.inspect_svg`), the styles
inline, and one small inline script adds hover read-outs. Every text from the data is HTML-escaped. The file is
written atomically and only after every input has been read and checked, so a bad input leaves no partial page.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

from au_core import atomic, contract, fidelity
from au_core.facs import AU_NAMES

from .inspect_data import load_corpus
from .inspect_options import InspectOptions
from .inspect_svg import (
    ACTIVE_COLORS,
    INACTIVE_COLORS,
    THRESHOLD,
    UNKNOWN_COLOR,
    bar_chart,
    code_label,
    esc,
    heatmap_svg,
    histogram,
    legend_svg,
    word_bins,
)
from .inspect_views import Corpus, EvalView, FrameRow, VideoView

log = logging.getLogger(__name__)

#: In every page: the sign that a file is a page of this command, which a later run may replace (pages
#: made before it start with LEGACY_HEAD). Any other existing file at the output path is refused.
GENERATOR = '<meta name="generator" content="au-agent inspect">'
LEGACY_HEAD = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
               'content="width=device-width, initial-scale=1"><title>AU ')


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
