"""The rows of ``make gpu-check`` about the generation backends: the hf backend over the same inputs at each batch
size (batch invariance, with the settings it needed, and throughput), CPU fp32 against the device, and vLLM when
installed. Each returns a :class:`~benchmarks.gpu_check_rows.Row`; the sweeps run as ``make bench --gpu`` does."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .gpu_check_rows import FAIL, PASS, Row, count_differences, skipped_unless_installed

if TYPE_CHECKING:
    from .gpu_check import GpuCheckOptions

log = logging.getLogger(__name__)

#: Settings tried in turn until the batch sizes agree (``None``: the largest batch size).
INVARIANCE_SETTINGS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("default", {}),
    ("deterministic kernels", {"deterministic": True}),
    ("deterministic + fixed-shape batches", {"deterministic": True, "fixed_batch_rows": None}),
)


# --------------------------------------------------------------------------- hf: invariance, speed, CPU


@dataclass
class Sweep:
    """The hf backend over the same inputs at each batch size, under one setting."""

    setting: str
    options: Dict[str, Any]
    runs: List[Dict[str, Any]]  # benchmarks.bench_gpu.measure_backend rows, one per batch size
    texts: Dict[int, List[str]]  # batch size → descriptions, in input order

    def mismatches(self) -> Dict[int, int]:
        """Per batch size, the descriptions that differ from the first batch size's."""
        sizes = list(self.texts)
        return {bs: count_differences(self.texts[sizes[0]], self.texts[bs]) for bs in sizes[1:]}

    @property
    def invariant(self) -> bool:
        return not any(self.mismatches().values())

    def rate(self, batch_size: int) -> float:
        return next(r["desc_per_s"] for r in self.runs if r["batch_size"] == batch_size)


def run_sweep(model: Path, inputs: List[str], opts: GpuCheckOptions, device: str, dtype: str,
              setting: str = "default", batch_sizes: Optional[Sequence[int]] = None, **agent_options: Any) -> Sweep:
    """Describe ``inputs`` at each batch size (warm-up, timing and memory as ``make bench --gpu`` does)."""
    from .bench_gpu import GpuBenchOptions, measure_backend

    bench = GpuBenchOptions(out=opts.out, model=Path(model), batch_sizes=tuple(batch_sizes or opts.batch_sizes),
                            max_new_tokens=opts.max_new_tokens, dtype=dtype)
    runs, texts = measure_backend("hf", bench, inputs, device=device, **agent_options)
    return Sweep(setting, agent_options, runs, texts)


def invariance_sweeps(model: Path, inputs: List[str], opts: GpuCheckOptions, device: str,
                      dtype: str = "bfloat16") -> List[Sweep]:
    """Sweeps under :data:`INVARIANCE_SETTINGS` in turn, up to the first whose batch sizes agree."""
    sweeps = []
    for setting, options in INVARIANCE_SETTINGS:
        options = {k: (max(opts.batch_sizes) if v is None else v) for k, v in options.items()}
        sweeps.append(run_sweep(model, inputs, opts, device, dtype, setting, **options))
        if sweeps[-1].invariant:
            break
        log.warning("batch sizes disagree under %r: %s", setting, sweeps[-1].mismatches())
    return sweeps


def batch_invariance_row(sweeps: Sequence[Sweep], label: str) -> Row:
    name = f"hf batch invariance ({label})"
    tried = {s.setting: s.mismatches() for s in sweeps}
    sizes = list(sweeps[0].texts)
    first = sweeps[0].texts[sizes[0]]
    numbers: Dict[str, Any] = {"batch_sizes": sizes, "inputs": len(first), "distinct_descriptions": len(set(first)),
                               "mismatches_by_setting": tried}
    held = next((s for s in sweeps if s.invariant), None)
    if held is None:
        return Row(name, FAIL, "descriptions differ between batch sizes under every setting tried: "
                   + "; ".join(f"{k}: {v}" for k, v in tried.items()), numbers)
    numbers["setting_needed"] = held.setting
    numbers["options_needed"] = held.options
    detail = (f"identical for batch sizes {', '.join(map(str, sizes))} ({numbers['inputs']} inputs, "
              f"{numbers['distinct_descriptions']} distinct descriptions)")
    if held is not sweeps[0]:
        base, top = sweeps[0], max(sizes)
        numbers["speed_cost"] = {bs: held.rate(bs) / base.rate(bs) for bs in sizes}
        detail += (f" only with {held.setting} {held.options} (default differed: {tried[sweeps[0].setting]}); "
                   f"speed at batch {top}: {numbers['speed_cost'][top]:.2f}× the default's")
    else:
        detail += " with the default settings"
    return Row(name, PASS, detail, numbers)


def throughput_row(sweeps: Sequence[Sweep], label: str) -> Row:
    """Descriptions/s per batch size of the default setting (and of the setting batch invariance needed)."""
    base = sweeps[0]
    sizes = list(base.texts)
    ratios = {bs: base.rate(bs) / base.rate(sizes[0]) for bs in sizes}
    peak = [r["peak_torch_memory_gb"] for r in base.runs if r.get("peak_torch_memory_gb") is not None]
    numbers: Dict[str, Any] = {"desc_per_s": {bs: base.rate(bs) for bs in sizes}, "ratio_to_first": ratios,
                               "output_tokens_per_s": {r["batch_size"]: r["output_tokens_per_s"] for r in base.runs},
                               "peak_gpu_memory_gb": max(peak) if peak else None}
    detail = ", ".join(f"bs {bs}: {base.rate(bs):.1f}/s ({ratios[bs]:.1f}×)" for bs in sizes)
    if peak:
        detail += f"; peak GPU memory {max(peak):.2f} GiB"
    for other in sweeps[1:]:
        numbers[f"desc_per_s ({other.setting})"] = {bs: other.rate(bs) for bs in sizes}
    return Row(f"hf throughput ({label})", PASS, detail, numbers)


def cpu_vs_device_row(cpu_texts: Sequence[str], device_texts: Sequence[str], label: str) -> Row:
    """Reported, not failed: bf16 greedy decoding may pick another token at a near-tie."""
    differ = count_differences(cpu_texts, device_texts)
    return Row(f"CPU fp32 vs {label}", PASS, f"{differ} of {len(cpu_texts)} descriptions differ (reported)",
               {"inputs": len(cpu_texts), "differ": differ})


# ------------------------------------------------------------------------------------- optional packages


def vllm_row(model: Path, inputs: List[str], opts: GpuCheckOptions, hf_texts: Optional[Sequence[str]]) -> Row:
    """The vLLM backend on the same inputs (when installed): it runs, and how many texts equal hf's."""
    missing = skipped_unless_installed("vLLM backend", "vllm")
    if missing:
        return missing
    from .bench_gpu import GpuBenchOptions, measure_backend

    bench = GpuBenchOptions(out=opts.out, model=Path(model), backends=("vllm",),
                            batch_sizes=(max(opts.batch_sizes),), max_new_tokens=opts.max_new_tokens,
                            dtype="bfloat16", gpu_memory_utilization=0.5)
    runs, texts = measure_backend("vllm", bench, inputs)
    out = texts[runs[0]["batch_size"]]
    numbers: Dict[str, Any] = {"desc_per_s": runs[0]["desc_per_s"], "inputs": len(inputs)}
    if not all(isinstance(t, str) for t in out) or len(out) != len(inputs):
        return Row("vLLM backend", FAIL, f"{len(out)} outputs for {len(inputs)} inputs", numbers)
    detail = f"{runs[0]['desc_per_s']:.1f} descriptions/s"
    if hf_texts is not None:
        numbers["differ_from_hf"] = count_differences(hf_texts, out)
        detail += f"; {numbers['differ_from_hf']} of {len(inputs)} differ from hf bf16 (reported)"
    return Row("vLLM backend", PASS, detail, numbers)


