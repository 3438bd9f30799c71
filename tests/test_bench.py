"""`make bench` code paths on a tiny corpus: the result structure and the seed-loop/precompute feature equality.

No timing is asserted here (speed is measured by `make bench` only); the GPU variant's argument handling and
its refusal without CUDA / vLLM are checked on CPU.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, str(REPO))

# E402: these imports need the sys.path entry above when pytest runs without the repository root on the path.
from benchmarks import bench_gpu, run  # noqa: E402
from benchmarks.common import BenchError  # noqa: E402

SMALL = ["--records", "200", "--videos", "2", "--frames", "30", "--max-new-tokens", "4", "--warm-repeats", "1",
         "--no-cli-warm", "-q"]


def test_bench_smoke(tmp_path, tiny_qwen2, tiny_clip, capsys):
    out = tmp_path / "bench_out"
    assert run.main(["--out", str(out), "--tiny-qwen2", str(tiny_qwen2), "--tiny-clip", str(tiny_clip), *SMALL]) == 0

    printed = capsys.readouterr().out
    assert "benchmark" in printed and "cold speed-up" in printed and "time per 100K" in printed
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["ok"] is True
    assert {"machine", "settings", "results", "targets_met"} <= set(doc)
    assert set(doc["results"]) == {"prepare-data", "features"}

    prepare = doc["results"]["prepare-data"]
    names = {m["name"] for m in prepare["metrics"]}
    assert {"records", "total", "throughput", "time per 100K"} <= names
    assert next(m for m in prepare["metrics"] if m["name"] == "records")["value"] > 0

    features = doc["results"]["features"]
    names = {m["name"] for m in features["metrics"]}
    assert {"seed loop", "precompute cold", "cold speed-up", "feature max |diff|", "description mismatches",
            "warm rerun (in-process)", "T=8 uniform cold", "T=8 uniform warm (in-process)"} <= names
    for m in features["metrics"]:
        assert set(m) == {"name", "value", "unit", "target", "met", "note"}
    equality = features["details"]["equality"]
    assert equality["equal"] is True and equality["description_mismatches"] == 0
    from au_core.openface import read_openface_csv

    csvs = sorted((out / "corpus").glob("features-2x30-*/openface/*.csv"))
    assert len(csvs) == 2  # every valid frame of the corpus was compared
    assert equality["frames_compared"] == sum(int(read_openface_csv(c).valid.sum()) for c in csvs) > 0
    assert equality["max_abs_diff"] <= equality["atol"]
    # the T=8 run wrote [8, 512] features for every video
    for meta in (out / "features" / "uniform8" / "features").glob("video_*.json"):
        assert json.loads(meta.read_text(encoding="utf-8"))["shape"] == [8, 512]


@pytest.mark.parametrize("argv", [
    ["--gpu"],                                         # no --model
    ["--model", "m"],                                  # --model without --gpu
    ["--gpu", "--model", "m", "--batch-sizes", "0"],
    ["--gpu", "--model", "m", "--batch-sizes", "8,x"],
    ["--gpu", "--model", "m", "--backends", "hf,tgi"],
    ["--gpu", "--model", "m", "--only", "features"],
])
def test_gpu_argument_errors(argv):
    with pytest.raises(SystemExit) as e:
        run.parse_args(argv)
    assert e.value.code == 2


def test_gpu_arguments_parse():
    args = run.parse_args(["--gpu", "--model", "m", "--adapter", "a", "--batch-sizes", "8,32", "--backends", "vllm"])
    assert args.batch_sizes == [8, 32] and args.backends == ["vllm"] and args.max_new_tokens == run.GPU_MAX_NEW_TOKENS
    assert run.parse_args([]).max_new_tokens == run.CPU_MAX_NEW_TOKENS


def test_gpu_refuses_bad_paths(tmp_path, tiny_qwen2, capsys):
    assert run.main(["--gpu", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "not a local model folder" in capsys.readouterr().err
    opts = bench_gpu.GpuBenchOptions(out=tmp_path, model=tiny_qwen2, adapter=tmp_path)
    with pytest.raises(BenchError, match="--adapter"):
        bench_gpu.validate(opts)


def test_gpu_fails_clearly_without_cuda_or_vllm(tmp_path, tiny_qwen2, capsys, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        assert run.main(["--gpu", "--model", str(tiny_qwen2), "--out", str(tmp_path)]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(bench_gpu.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BenchError, match="vLLM is not installed"):
        bench_gpu.check_environment(["hf", "vllm"])
    assert bench_gpu.check_environment(["hf"])["gpu"] == "fake GPU"
