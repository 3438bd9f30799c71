"""``make gpu-check``: its verdicts, table, report and refusal, and the rows that also run on CPU (real tiny
models, CPU fp32 / bf16 autocast standing in for CUDA). The CUDA run itself is ``python -m benchmarks.gpu_check``."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from affectgpt_patch.agent import AgentConfig, create_au_agent
from affectgpt_patch.agent.hf import deterministic_kernels
from au_core import contract
from au_core.errors import AUAgentError
from au_standins.synthetic import PROTOTYPES
from benchmarks import gpu_check as gc
from benchmarks import gpu_check_hf as gc_hf
from benchmarks import gpu_check_rows as gc_rows

INPUTS = [contract.format_input(v) for v in PROTOTYPES.values()] + [
    "AU01: 0.98", "AU04: 1.50, AU07: 2.20", "AU12: 2.00, AU25: 1.10", "AU45: 2.20", "AU09: 1.30, AU10: 1.90",
    "AU02: 3.10", "AU06: 1.10, AU12: 1.40", "AU15: 2.40, AU17: 1.30", "AU20: 1.60", "AU26: 2.70"]


def cpu_options(tmp_path, **kw):
    return gc.GpuCheckOptions(out=tmp_path, device="cpu", dtype="float32", batch_sizes=(1, 3, 8),
                              max_new_tokens=8, **kw)


# ------------------------------------------------------------------------------------------------ verdicts


def test_feature_comparison_normalises_and_applies_the_cosine_bound():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 512)).astype(np.float32)
    same = gc_rows.compare_features(a, 3.0 * a)  # L2 normalisation first: the scale does not matter
    assert same["min_cosine"] == pytest.approx(1.0) and same["max_abs_diff"] < 1e-6 and gc_rows.features_close(same)
    fp16 = gc_rows.compare_features(a, a.astype(np.float16))
    assert gc_rows.features_close(fp16) and 0 < fp16["max_abs_diff"] < 1e-3
    b = a.copy()
    b[4] = rng.normal(size=512)  # one unrelated row fails the whole stack
    off = gc_rows.compare_features(a, b)
    assert not gc_rows.features_close(off) and off["min_cosine"] < 0.5 and off["mean_cosine"] > 0.8
    with pytest.raises(ValueError):
        gc_rows.compare_features(a, a[:3])


def test_loss_verdict():
    assert gc_rows.loss_verdict([3.0, 2.9, 3.1, 2.5, 2.2, 2.0])[0]
    assert not gc_rows.loss_verdict([2.0, 2.1, 2.2, 2.3])[0]
    assert "non-finite" in gc_rows.loss_verdict([3.0, float("nan"), 2.0, 1.0])[1]
    assert not gc_rows.loss_verdict([3.0, 2.0])[0]


def sweep(setting, texts, rate=10.0, peak=None):
    runs = [{"batch_size": bs, "desc_per_s": rate * bs ** 0.5, "output_tokens_per_s": 100.0,
             "peak_torch_memory_gb": peak} for bs in texts]
    return gc_hf.Sweep(setting, {}, runs, texts)


def test_batch_invariance_row_names_the_setting_that_was_needed():
    same = ["a", "b", "c"]
    default = sweep("default", {1: same, 7: ["a", "x", "c"], 32: same}, rate=20.0)
    fixed = sweep("deterministic kernels", {1: same, 7: same, 32: same}, rate=10.0)
    assert default.mismatches() == {7: 1, 32: 0} and not default.invariant and fixed.invariant
    row = gc_hf.batch_invariance_row([default, fixed], "bf16")
    assert row.status == gc_rows.PASS and row.numbers["setting_needed"] == "deterministic kernels"
    assert row.numbers["speed_cost"][32] == pytest.approx(0.5) and "0.50×" in row.detail
    assert gc_hf.batch_invariance_row([fixed], "bf16").detail.endswith("with the default settings")
    failed = gc_hf.batch_invariance_row([default, sweep("deterministic kernels", default.texts)], "bf16")
    assert failed.status == gc_rows.FAIL and "every setting" in failed.detail


def test_throughput_row_is_a_ratio_table_with_peak_memory():
    row = gc_hf.throughput_row([sweep("default", {1: ["a"], 4: ["a"], 16: ["a"]}, peak=1.5)], "bf16")
    assert row.numbers["ratio_to_first"] == {1: 1.0, 4: pytest.approx(2.0), 16: pytest.approx(4.0)}
    assert row.numbers["peak_gpu_memory_gb"] == 1.5 and "bs 16: 40.0/s (4.0×)" in row.detail


def test_cpu_vs_device_row_reports_differences_without_failing():
    row = gc_hf.cpu_vs_device_row(["a", "b", "c"], ["a", "x", "c"], "bf16 on cuda")
    assert row.status == gc_rows.PASS and row.numbers["differ"] == 1 and "1 of 3" in row.detail
    with pytest.raises(ValueError):
        gc_rows.count_differences(["a"], ["a", "b"])


def test_fingerprint_row_fails_when_a_dtype_change_keeps_the_fingerprint():
    def agent(dtype, fp):
        return SimpleNamespace(config=AgentConfig(device="cpu", dtype=dtype), fingerprint=fp)

    def encoder(dtype, fp):
        import torch

        return SimpleNamespace(model=SimpleNamespace(dtype=getattr(torch, dtype)), device="cpu", fingerprint=fp)

    ok = gc_rows.fingerprint_row([agent("float32", "a1"), agent("bfloat16", "a2")],
                            [encoder("float32", "c"), encoder("float32", "c")])
    assert ok.status == gc_rows.PASS and "same dtype (float32)" in ok.detail
    bad = gc_rows.fingerprint_row([agent("float32", "a1"), agent("bfloat16", "a1")],
                             [encoder("float32", "c"), encoder("float16", "c")])
    assert bad.status == gc_rows.FAIL
    assert "agent fingerprint a1 is the same for float32 on cpu and bfloat16 on cpu" in bad.detail
    assert "CLIP fingerprint c" in bad.detail


def test_optional_rows_are_skipped_when_their_package_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(gc_rows.importlib.util, "find_spec", lambda name, *a: None)
    row = gc_hf.vllm_row(tmp_path, INPUTS, cpu_options(tmp_path), None)
    assert (row.status, row.detail) == (gc_rows.SKIP, "skipped: vllm not installed")
    assert gc_rows.qlora_row(tmp_path, tmp_path, INPUTS, 8).detail == "skipped: bitsandbytes not installed"


def test_a_row_that_raises_fails_alone():
    def broken():
        raise RuntimeError("CUDA error: an illegal memory access\nmore")

    row = gc.guarded("x", broken)
    assert (row.status, row.detail) == (gc_rows.FAIL, "RuntimeError: CUDA error: an illegal memory access")
    assert "seconds" in row.numbers


# ------------------------------------------------------------------------------------- table, report, CLI


def test_table_and_atomic_report(tmp_path):
    rows = [gc_rows.Row("one", gc_rows.PASS, "fine", {"x": float("nan")}), gc_rows.Row("two", gc_rows.FAIL, "broken"),
            gc_rows.Row("three", gc_rows.SKIP, "skipped: vllm not installed")]
    table = gc.render_table(rows).splitlines()
    assert table[0].split() == ["check", "status", "detail"] and set(table[1]) == {"-", " "}
    assert table[3].split()[:2] == ["two", "FAIL"] and table[4].split()[:2] == ["three", "skipped"]
    path = tmp_path / "gpu_check" / gc.REPORT
    doc = gc.write_report(path, rows, {"gpu": "test"}, cpu_options(tmp_path), 1.0)
    assert json.loads(path.read_text()) == doc and [p.name for p in path.parent.iterdir()] == [gc.REPORT]
    assert doc["ok"] is False and doc["counts"] == {"pass": 1, "fail": 1, "skipped": 1}
    assert doc["rows"][0]["numbers"]["x"] is None and doc["settings"]["device"] == "cpu"
    assert gc.write_report(path, rows[::2], {}, {}, 1.0)["ok"] is True


def test_refuses_without_cuda_in_one_line(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gc.main(["--out", str(tmp_path / "out"), "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("gpu-check: no CUDA device: make gpu-check needs an NVIDIA GPU")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ rows on CPU


def test_hf_batch_invariance_and_the_fixed_shape_setting_on_cpu(tiny_qwen2, tmp_path):
    opts = cpu_options(tmp_path)
    sweeps = gc_hf.invariance_sweeps(tiny_qwen2, INPUTS, opts, "cpu", "float32")
    assert len(sweeps) == 1 and sweeps[0].invariant  # CPU fp32 needs no extra setting
    row = gc_hf.batch_invariance_row(sweeps, "fp32 on cpu")
    assert row.status == gc_rows.PASS and row.numbers["distinct_descriptions"] > len(INPUTS) // 2
    knobs = gc_hf.run_sweep(tiny_qwen2, INPUTS, opts, "cpu", "float32", "fixed", deterministic=True, fixed_batch_rows=8)
    assert knobs.texts == sweeps[0].texts  # padding rows and deterministic kernels change no description
    assert gc_hf.throughput_row(sweeps, "fp32 on cpu").numbers["peak_gpu_memory_gb"] is None


def test_batch_invariance_settings_come_from_affectgpt_configs_too(tiny_qwen2):
    from affectgpt_patch.agent import agent_config

    config = agent_config({"au_agent_base_model": str(tiny_qwen2), "au_agent_deterministic": True,
                           "au_agent_fixed_batch_rows": 128})
    assert (config.deterministic, config.fixed_batch_rows) == (True, 128)
    with pytest.raises(AUAgentError, match="fixed_batch_rows"):
        create_au_agent(backend="hf", base_model=str(tiny_qwen2), fixed_batch_rows=-1)


def test_environment_lists_the_packages_that_decide_the_optional_rows(monkeypatch):
    import torch
    import transformers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    env = gc.environment()
    assert env["gpu"] == "fake GPU" and env["transformers"] == transformers.__version__
    assert env["clip"] and all(env[p] is None or isinstance(env[p], str) for p in ("vllm", "bitsandbytes"))


def test_deterministic_kernels_restore_the_previous_settings():
    import torch

    matmul = torch.backends.cuda.matmul

    def settings():
        return (torch.are_deterministic_algorithms_enabled(), matmul.allow_bf16_reduced_precision_reduction,
                matmul.allow_tf32)

    before = settings()
    with deterministic_kernels():
        assert settings() == (True, False, False)
    assert settings() == before


def test_clip_row_on_cpu(tiny_clip):
    row = gc_rows.clip_row(tiny_clip, ["The face shows a slight smile.", "Brows drawn together.", "x"], "cpu")
    assert row.status == gc_rows.PASS and row.numbers["min_cosine"] == pytest.approx(1.0)
    assert row.name == "CLIP text features (float32 on cpu)"


def test_precompute_and_fingerprint_rows_on_cpu(tiny_qwen2, tiny_clip, tmp_path):
    from benchmarks.bench_features import build_corpus

    openface = build_corpus(tmp_path, 2, 40, 0)
    fp32 = gc_rows.run_precompute(openface, tmp_path / "a", tiny_qwen2, tiny_clip, "cpu", "float32", 8)
    again = gc_rows.run_precompute(openface, tmp_path / "b", tiny_qwen2, tiny_clip, "cpu", "float32", 8)
    row = gc_rows.precompute_row(fp32.features, again.features, "fp32 on cpu")
    assert row.status == gc_rows.PASS and row.numbers["descriptions_differ"] == 0 and row.numbers["rows"] > 0
    bf16 = create_au_agent(backend="hf", base_model=str(tiny_qwen2), device="cpu", dtype="bfloat16", use_cache=False)
    fp = gc_rows.fingerprint_row([fp32.agent, bf16], [fp32.encoder, again.encoder])
    assert fp.numbers["agent"]["dtypes"] == ["float32 on cpu", "bfloat16 on cpu"]
    assert (fp.status == gc_rows.PASS) == (fp32.agent.fingerprint != bf16.fingerprint)
    (again.features / f"{sorted(p.stem for p in again.features.glob('*.npy'))[0]}.json").unlink()
    assert gc_rows.precompute_row(fp32.features, again.features, "fp32 on cpu").status == gc_rows.FAIL


def test_au_branch_row_under_cpu_autocast(monkeypatch):
    row = gc_rows.au_branch_row("cpu")
    assert row.status == gc_rows.PASS, row.detail
    assert row.numbers["attention/bfloat16"]["tokens_dtype"] == "bfloat16"
    from functools import partial

    from affectgpt_patch.templates import au_branch

    monkeypatch.setattr(au_branch, "AUProjector", partial(au_branch.AUProjector, frozen=True))
    frozen = gc_rows.au_branch_row("cpu", dtypes=("bfloat16",))
    assert frozen.status == gc_rows.FAIL and "au_llama_proj.weight gets no gradient" in frozen.detail


@pytest.mark.slow  # a real llamafactory-cli run (tens of seconds on 2 cores)
def test_lora_training_row_on_cpu(tiny_qwen2, sample_dataset, tmp_path, quiet_transformers):
    row, out = gc_rows.lora_training_row(tiny_qwen2, sample_dataset, tmp_path / "agent", 10, "cpu",
                                    gc_rows.TRAIN_OVERRIDES + ("bf16=false",), probe=INPUTS[:3])
    assert row.status == gc_rows.PASS, row.detail
    assert len(row.numbers["losses"]) == 10 and all(row.numbers["adapter_probe"])
    assert (out / "checkpoint-best" / "adapter_config.json").is_file()
    recipe = (out / "au_agent_recipe.yaml").read_text()
    assert "lora_rank: 64" in recipe and "max_steps: 10" in recipe


def test_inputs_fill_the_largest_batch_with_one_prompt_length(tiny_qwen2):
    from transformers import AutoTokenizer

    from affectgpt_patch.agent.prompts import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen2))
    candidates = [contract.format_input({"AU01": a / 100, "AU12": b / 100}) for a in range(100, 130)
                  for b in range(100, 104)] + INPUTS
    picked = gc.pick_inputs(candidates, tokenizer, 40, 32)
    assert len(picked) == len(set(picked)) == 40
    assert len({len(encode_prompt(tokenizer, s)) for s in picked[:32]}) == 1
    with pytest.raises(gc.BenchError, match="of one length"):
        gc.pick_inputs(INPUTS, tokenizer, 20, 16)
