"""`--engine ray`: a Ray cluster started by the test (127.0.0.1, 2 CPUs) writes the local engine's bytes.

One cluster serves the module (Ray starts slowly on 2 cores); the two-node cluster lives in
test_ray_cluster.py. The real tiny agent (LoRA-trained tiny Qwen2) and the tiny CLIP run inside Ray actors.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import au_agent_cli
from au_core import contract
from au_standins.synthetic import write_video

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'au-agent[ray]')")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, samples):
    """The bundled samples, synthetic videos, and two bad CSVs the engines must report the same way."""
    root = tmp_path_factory.mktemp("ray_corpus") / "openface"
    shutil.copytree(samples / "openface", root)
    for i in range(10):
        write_video(root, f"vid_{i:03d}", 30 + 9 * i, seed=100 + i)
    shutil.copy(root / "vid_000.csv", root / "copy_vid_000.csv")  # the same AU inputs under another name
    (root / "broken.csv").write_text("")
    (root / "no_face.csv").write_text("frame, success, AU01_r\n")
    return root


def precompute_args(corpus, out, cache, agent, clip, *extra):
    return ["-q", "precompute", "--openface-dir", str(corpus), "--out", str(out), "--cache-dir", str(cache),
            "--clip-model", str(clip), "--agent", str(agent), "--max-new-tokens", "6", "--keep-going", *extra]


def outputs(out):
    return {p.name: p.read_bytes() for p in sorted(Path(out).iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory, tiny_adapter, tiny_clip):
    out = tmp_path_factory.mktemp("local") / "features"
    assert au_agent_cli.main(precompute_args(corpus, out, out.parent / "cache", tiny_adapter, tiny_clip)) == 0
    return outputs(out)


def test_precompute_on_ray_writes_the_local_bytes(ray_cluster, corpus, local_run, tmp_path, tiny_adapter,
                                                  tiny_clip, capsys):
    from affectgpt_patch.agent import agent_config
    from affectgpt_patch.engines.ray_engine import RayOptions
    from affectgpt_patch.engines.ray_precompute import ClipSpec, precompute_on_ray
    from affectgpt_patch.features.precompute import PrecomputeOptions

    out = tmp_path / "features"
    config = agent_config(str(tiny_adapter), max_new_tokens=6, cache_dir=str(tmp_path / "cache"))
    summary = precompute_on_ray(PrecomputeOptions(corpus, out, progress=False), config,
                                ClipSpec(str(tiny_clip), cache_dir=str(tmp_path / "cache")),
                                RayOptions(progress=False, describe_actors=2))
    assert outputs(out) == local_run  # features, descriptions and AU captions alike
    assert len([n for n in local_run if n.endswith(".npy")]) == 12 + 10 + 1
    assert json.loads(local_run["vid_000.json"])["caption"]["text"]  # counted with the agent's base tokenizer
    failures = [json.loads(line) for line in local_run["failures.jsonl"].decode().splitlines()]
    assert [f["name"] for f in failures] == ["broken", "no_face"]
    assert (summary["done"], summary["failed"], summary["failed_by_reason"]) == (23, 2, {
        f["reason"]: 1 for f in failures})

    # Each distinct AU input of the corpus was generated once, also the copied video's (two actors, no cache).
    metas = [json.loads(v) for k, v in local_run.items() if k.endswith(".json")]
    assert json.loads(local_run["copy_vid_000.json"])["inputs"] == json.loads(local_run["vid_000.json"])["inputs"]
    distinct = {s for m in metas for s in m["inputs"] if s is not None and not contract.is_neutral(s)}
    assert summary["agent_generated"] == len(distinct) and summary["agent_hits"] == 0

    # The CLI: rerun over the finished folder skips everything, still reports the two bad CSVs, exits 1.
    args = precompute_args(corpus, out, tmp_path / "cache", tiny_adapter, tiny_clip, "--engine", "ray")
    assert au_agent_cli.main([a for a in args if a != "--keep-going"]) == 1
    assert "2 videos failed" in capsys.readouterr().err
    assert outputs(out) == local_run


def test_describe_and_eval_on_ray_match_local(ray_cluster, corpus, sample_dataset, tmp_path, tiny_adapter):
    agent = ["--agent", str(tiny_adapter), "--max-new-tokens", "6"]
    csvs = [str(corpus / "sample_00000.csv"), str(corpus / "vid_003.csv")]
    for engine in ("local", "ray"):
        assert au_agent_cli.main(["-q", "describe", *csvs, "--out", str(tmp_path / f"{engine}.jsonl"), *agent,
                                  "--cache-dir", str(tmp_path / f"c_{engine}"), "--engine", engine]) == 0
        assert au_agent_cli.main(["-q", "eval", "--dataset", str(sample_dataset / "val.json"), "--out",
                                  str(tmp_path / f"eval_{engine}"), *agent, "--cache-dir",
                                  str(tmp_path / f"e_{engine}"), "--engine", engine]) == 0
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert ((tmp_path / "eval_ray" / "predictions.jsonl").read_bytes()
            == (tmp_path / "eval_local" / "predictions.jsonl").read_bytes())


def _ray_worker_pids(title: str):
    """Ray worker processes whose process title names ``title`` (Ray sets ``ray::<actor class>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::") and title in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc")
def test_killed_worker_job_finishes_or_rerun_completes_with_same_bytes(ray_cluster, corpus, local_run, tmp_path,
                                                                       tiny_adapter, tiny_clip):
    out = tmp_path / "features"
    args = precompute_args(corpus, out, tmp_path / "cache", tiny_adapter, tiny_clip, "--engine", "ray")
    result = {}
    job = threading.Thread(target=lambda: result.setdefault("rc", au_agent_cli.main(args)))
    job.start()
    killed = []
    deadline = time.time() + 180
    while job.is_alive() and time.time() < deadline and not killed:
        for pid in _ray_worker_pids("_Describer"):  # an agent actor, loading the model or generating
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)
    job.join(300)
    assert killed, "no agent actor was seen to kill"
    if result.get("rc") != 0:  # the job gave up: a rerun completes it
        assert au_agent_cli.main(args) == 0
    assert outputs(out) == local_run


def test_vllm_processor_settings_come_from_the_agent_card(tiny_adapter, tiny_qwen2):
    from transformers import AutoTokenizer

    from affectgpt_patch.agent import agent_config
    from affectgpt_patch.agent.prompts import encode_prompt, stop_token_ids
    from affectgpt_patch.agent.vllm_backend import adapter_rank
    from affectgpt_patch.engines.ray_engine import vllm_processor_settings, vllm_request

    config = agent_config(str(tiny_adapter), backend="vllm", max_new_tokens=40)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    stops = stop_token_ids(tokenizer)
    settings, sampling, lora = vllm_processor_settings(config, stops, concurrency=3, batch_size=32)
    assert settings["model_source"] == config.base_model == str(tiny_qwen2)
    assert lora == str(Path(config.lora_weights).resolve())
    engine = settings["engine_kwargs"]
    assert engine["enable_lora"] and engine["max_loras"] == 1 and engine["max_lora_rank"] >= adapter_rank(lora)
    assert (settings["concurrency"], settings["batch_size"]) == (3, 32)
    assert not (settings["chat_template_stage"] or settings["tokenize_stage"] or settings["detokenize_stage"])
    assert sampling["temperature"] == 0.0 and sampling["max_tokens"] == 40 and sampling["stop_token_ids"] == stops

    row = vllm_request("AU06: 1.40, AU12: 2.10", tokenizer, sampling, lora)
    assert row["tokenized_prompt"] == encode_prompt(tokenizer, "AU06: 1.40, AU12: 2.10")
    assert row["model"] == lora and row["sampling_params"] == sampling

    merged = agent_config(str(tiny_qwen2), backend="vllm")  # a merged model: no adapter, no LoRA engine
    settings, _, lora = vllm_processor_settings(merged, stops)
    assert lora is None and "enable_lora" not in settings["engine_kwargs"]
    assert "model" not in vllm_request("AU06: 1.40", tokenizer, sampling, lora)

    # A neutral input gets the contract's neutral text without reaching vLLM, as in the local agent.
    from affectgpt_patch.engines.ray_engine import RayOptions, describe_distinct

    texts, stats = describe_distinct([contract.NEUTRAL_INPUT], config, RayOptions(progress=False))
    assert texts == {contract.NEUTRAL_INPUT: contract.NEUTRAL_DESCRIPTION} and stats["generated"] == 0

    from ray.data.llm import vLLMEngineProcessorConfig  # the real configuration accepts them

    built = vLLMEngineProcessorConfig(**vllm_processor_settings(config, stops)[0])
    assert built.model_source == config.base_model and built.engine_kwargs["enable_lora"]


BLOCK_RAY = ("import sys, builtins\n"
             "real = builtins.__import__\n"
             "def guard(name, *a, **k):\n"
             "    if name == 'ray' or name.startswith('ray.'):\n"
             "        raise ImportError(f'No module named {name!r}')\n"
             "    return real(name, *a, **k)\n"
             "builtins.__import__ = guard\n"
             "import au_agent_cli\n"
             "sys.exit(au_agent_cli.main(sys.argv[1:]))\n")


def test_without_ray_one_line_and_exit_1_and_the_local_engine_needs_no_ray(samples, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(au_agent_cli.__file__).parents[1])}
    base = ["precompute", "--openface-dir", str(samples / "openface"), "--out", str(tmp_path / "f"),
            "--backend", "rules", "--cache-dir", str(tmp_path / "c")]
    for command in (base, ["describe", str(samples / "openface"), "--backend", "rules"]):
        run = subprocess.run([sys.executable, "-c", BLOCK_RAY, *command, "--engine", "ray"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 1
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'au-agent[ray]'" in lines[0], run.stderr
    local = subprocess.run([sys.executable, "-c", BLOCK_RAY, "-q", "describe", str(samples / "openface"),
                            "--backend", "rules", "--no-cache"], env=env, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0 and local.stdout.count("\n") > 10, local.stderr
