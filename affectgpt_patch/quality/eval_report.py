"""How an ``au-agent eval`` report reads: the side-by-side table (in ``report.md`` and on the terminal), the per-AU,
feature-similarity, length, throughput and least-faithful sections of ``report.md``, and the charts ``au_f1.png``,
``lengths.png`` and ``features.png``. It only renders the report that :func:`.evaluate.evaluate` computed, so the
numbers are decided in one place; matplotlib is imported when a chart is drawn, never with this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence

from au_core import contract
from au_core.facs import AU_NAMES

if TYPE_CHECKING:
    from .evaluate import EvalRecord

#: The systems scored side by side, in the order of every table and chart.
SYSTEMS = ("agent", "teacher", "rules")
FEATURE_CHART = "features.png"


def _num(x: Optional[float], digits: int) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def summary_rows(report: Mapping[str, object]) -> List[List[str]]:
    """The side-by-side table: one row per system (used by report.md and the CLI)."""
    rows = [["system", "BLEU", "ROUGE-L", "AU precision", "AU recall", "AU F1", "hallucination rate",
             "omission rate", "words"]]
    for name, s in report["systems"].items():
        f = s["fidelity"]
        label = f"{s['label']} ({report['agent']['backend']})" if name == "agent" else s["label"]
        rows.append([label, _num(s["bleu"], 2), _num(s["rouge_l"], 3), _num(f["precision"], 3), _num(f["recall"], 3),
                     _num(f["f1"], 3), _num(f["hallucination_rate"], 3), _num(f["omission_rate"], 3),
                     _num(s["words"]["mean"], 1)])
    return rows


def summary_text(report: Mapping[str, object]) -> str:
    """Plain-text table for the terminal."""
    rows = summary_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    if report.get("features"):
        rows = feature_rows(report)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += [f"CLIP text features ({report['features']['clip_model']}):"]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in rows]
    t = report["timing"]
    lines.append(f"{report['dataset']['records']} records; generation {t['generation_s']:.2f} s "
                 f"({_num(t['descriptions_per_s'], 1)} descriptions/s, {t['cache_hits']} cache hits, "
                 f"{t['generated']} generated)")
    return "\n".join(lines)


def _md_table(rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def report_markdown(report: Mapping[str, object], records: Sequence[EvalRecord], texts, scores) -> str:
    ds, ag, t = report["dataset"], report["agent"], report["timing"]
    systems = report["systems"]
    who = ag["agent_dir"] or ag["base_model"] or ag["backend"]
    lines = [
        "# AU Agent evaluation",
        "",
        f"Dataset `{ds['path']}`: {ds['records']} records ({ds['distinct_inputs']} distinct AU inputs). "
        f"Agent: `{who}` ({ag['backend']} backend, fingerprint `{ag['fingerprint']}`). "
        f"Prompt contract `{report['contract_version']}`, lexicon `{report['lexicon_version']}`.",
        "",
        *_md_table(summary_rows(report)),
        "",
        "BLEU (sacrebleu, corpus, 0–100) and ROUGE-L (rouge-score, mean F-measure, 0–1) compare each text with the "
        "reference description. **AU fidelity** compares the AUs a text mentions (a lexicon of FACS names and "
        "everyday phrasings, negations excluded; `au_core/fidelity.py`) with the AUs active in its input "
        f"(intensity > {contract.ACTIVE_THRESHOLD}), micro-averaged: precision = mentioned and active / mentioned, "
        "recall = mentioned and active / active, hallucination rate = mentioned but not active / mentioned. "
        "The teacher row scores the reference texts themselves; the rules baseline mentions exactly the active AUs "
        "by construction.",
        "",
        "## Per AU",
        "",
    ]
    per = {name: systems[name]["fidelity"]["per_au"] for name in SYSTEMS}
    codes = sorted({c for table in per.values() for c in table}, key=lambda c: int(c[2:]))
    rows = [["AU", "name", "active", "F1 agent", "F1 teacher", "F1 rules", "hallucinated agent",
             "hallucinated teacher", "missed agent", "missed teacher"]]
    for code in codes:
        get = {name: per[name].get(code) for name in SYSTEMS}
        active = next(g["active"] for g in get.values() if g)
        rows.append([code, AU_NAMES.get(code, ""), str(active)]
                    + [_num(get[n]["f1"], 3) if get[n] else "—" for n in SYSTEMS]
                    + [str(get[n]["hallucinated"]) if get[n] else "0" for n in ("agent", "teacher")]
                    + [str(get[n]["missed"]) if get[n] else "0" for n in ("agent", "teacher")])
    lines += _md_table(rows)
    lines += ["", "## Feature similarity (what AffectGPT sees)", ""]
    lines += feature_markdown(report)
    lines += ["", "## Length (words)", ""]
    rows = [["system", "mean", "median", "p90", "min", "max"]]
    for name in SYSTEMS:
        w = systems[name]["words"]
        rows.append([systems[name]["label"], f"{w['mean']:.1f}", str(w["median"]), str(w["p90"]), str(w["min"]),
                     str(w["max"])])
    lines += _md_table(rows)
    lines += [
        "", "## Throughput and memory", "",
        f"Generation of {ds['records']} descriptions ({ds['distinct_inputs']} distinct inputs) took "
        f"{t['generation_s']:.2f} s: {_num(t['descriptions_per_s'], 1)} descriptions/s at batch size "
        f"{t['batch_size']}; {t['cache_hits']} read from the description cache, {t['generated']} generated. "
        f"Peak RSS {_num(t['peak_rss_mib'], 0)} MiB"
        + (f", peak CUDA memory {t['cuda_max_memory_allocated_mib']:.0f} MiB." if t["cuda_max_memory_allocated_mib"]
           else "."),
        "",
    ]
    worst = sorted(range(len(records)), key=lambda i: (scores["agent"][i].f1, i))[:5]
    worst = [i for i in worst if scores["agent"][i].f1 < 1.0]
    if worst:
        lines += ["## Least faithful agent descriptions", ""]
        for i in worst:
            s = scores["agent"][i]
            lines += [f"* `{records[i].input}` — F1 {s.f1:.2f}; hallucinated "
                      f"{', '.join(sorted(s.hallucinated)) or '—'}; missed {', '.join(sorted(s.missed)) or '—'}",
                      f"  * agent: {texts['agent'][i]}",
                      f"  * reference: {records[i].reference}"]
        lines.append("")
    lines += ["## Files", "", "`report.json` (the numbers; `timing` is the only run-dependent section), "
              "`predictions.jsonl` (per record: input, reference, prediction, active and mentioned AUs), "
              "`au_f1.png` (per-AU F1), `lengths.png` (description lengths)"
              + (f", `{FEATURE_CHART}` (feature similarity)." if report.get("features") else "."), ""]
    return "\n".join(lines)


def feature_rows(report: Mapping[str, object]) -> List[List[str]]:
    """One row per system: cosine to the teacher's features, same-AU and different-AU cosines, separation."""
    rows = [["system", "cosine to teacher", "same AUs", "different AUs", "separation"]]
    for name, f in report["features"]["systems"].items():
        rows.append([report["systems"][name]["label"], _num(f["cosine_to_teacher"], 3),
                     _num(f["same_aus_cosine"], 3), _num(f["different_aus_cosine"], 3), _num(f["separation"], 3)])
    return rows


def feature_markdown(report: Mapping[str, object]) -> List[str]:
    features = report.get("features")
    if not features:
        return ["Not computed: pass `--clip-model` (the CLIP model the AU features use, e.g. `ViT-B/32` or its "
                "`.pt` file) to compare the descriptions' CLIP text features."]
    return [
        f"CLIP text features (`{features['clip_model']}`, {features['dim']} dimensions, L2-normalised) of each "
        "system's descriptions. *Cosine to teacher*: mean cosine between a description's feature and the "
        "reference description's feature of the same record (the teacher against itself is 1). *Same AUs* / "
        "*different AUs*: mean cosine between the features of two records whose active AU sets are equal / differ "
        f"({features['pair_records']} records, {features['active_sets']} distinct AU sets); *separation* is the "
        "gap, how much the features tell expressions apart.",
        "",
        *_md_table(feature_rows(report)),
    ]


def _plot_features(path: Path, report: Mapping[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"agent": "#4c72b0", "teacher": "#dd8452", "rules": "#55a868"}
    features = report["features"]["systems"]
    metrics = [("cosine_to_teacher", "cosine to teacher"), ("same_aus_cosine", "same AUs"),
               ("different_aus_cosine", "different AUs"), ("separation", "separation")]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    width = 0.27
    for k, name in enumerate(SYSTEMS):
        values = [features[name][key] or 0.0 for key, _ in metrics]
        ax.bar([i + (k - 1) * width for i in range(len(metrics))], values, width,
               label=report["systems"][name]["label"], color=colors[name])
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics], fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("mean cosine")
    ax.set_title(f"CLIP text features ({report['features']['clip_model'].split('/')[-1]})")
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def _plot(out: Path, report: Mapping[str, object], texts: Mapping[str, Sequence[str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"agent": "#4c72b0", "teacher": "#dd8452", "rules": "#55a868"}
    systems = report["systems"]
    per = {name: systems[name]["fidelity"]["per_au"] for name in SYSTEMS}
    codes = sorted({c for table in per.values() for c in table}, key=lambda c: int(c[2:]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(codes) + 2), 3.6))
    width = 0.27
    for k, name in enumerate(SYSTEMS):
        values = [per[name][c]["f1"] if c in per[name] else 0.0 for c in codes]
        ax.bar([i + (k - 1) * width for i in range(len(codes))], values, width, label=systems[name]["label"],
               color=colors[name])
    ax.set_xticks(range(len(codes)), codes, rotation=60, fontsize=8)
    ax.set_ylim(0, 1.22)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("AU fidelity F1")
    ax.set_title("Per-AU fidelity: agent vs teacher vs rules")
    ax.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "au_f1.png", dpi=90, metadata={"Software": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    longest = max(len(t.split()) for ts in texts.values() for t in ts)
    bins = list(range(0, longest + 3, 2))
    styles = {"agent": ("-", 2.2), "teacher": ("-", 1.4), "rules": ("--", 1.4)}
    for name in SYSTEMS:
        ax.hist([len(t.split()) for t in texts[name]], bins=bins, histtype="step", linestyle=styles[name][0],
                linewidth=styles[name][1], label=systems[name]["label"], color=colors[name])
    ax.set_xlabel("words per description")
    ax.set_ylabel("records")
    ax.set_title("Description length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lengths.png", dpi=90, metadata={"Software": None})
    plt.close(fig)
