"""The drawings of the ``au-agent inspect`` page, as inline SVG: the AU × frame heatmap of a video (cells coloured
by the contract's activation threshold, a run of equal inactive cells drawn as one, frames without a face shaded,
the chosen frames marked) with its colour legend, and the page's bar charts and histograms. Every text drawn is
HTML-escaped here; :mod:`.inspect_page` places the drawings in the page.
"""
from __future__ import annotations

import bisect
import html
import math
from typing import Iterable, List, Sequence, Tuple

import numpy as np

from au_core import contract
from au_core.facs import AU_NAMES

from .inspect_views import Heatmap

THRESHOLD = contract.ACTIVE_THRESHOLD
#: Upper edges of the colour levels above the threshold (the last level is open).
ACTIVE_EDGES = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
INACTIVE_COLORS = ("#f4f5f7", "#e2e5e9", "#c8cdd3")  # (0, t/3], (t/3, 2t/3], (2t/3, t]
ACTIVE_COLORS = ("#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026")
UNKNOWN_COLOR = "#fbfbfd"
LABEL_W, ROW_H, TOP = 196, 11, 20
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
