"""The agent fingerprint (the description-cache namespace) changes with everything that changes the text."""
import dataclasses
import os

from affectgpt_patch.agent import cache
from affectgpt_patch.agent.config import AgentConfig, fingerprint
from affectgpt_patch.features.clip_encoder import DeferredClipEncoder


def _model(folder, weights: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (folder / "model-00001-of-00001.safetensors").write_bytes(weights)
    return folder


def test_every_weight_byte_counts(tmp_path):
    size = 6 << 20  # beyond the first and last MiB
    weights = bytearray(size)
    a = _model(tmp_path / "a" / "m", bytes(weights))
    weights[size // 2] = 1
    b = _model(tmp_path / "b" / "m", bytes(weights))
    cfg = AgentConfig(backend="hf", base_model=str(a), cache_dir=str(tmp_path / "cache"))
    assert fingerprint(cfg) != fingerprint(dataclasses.replace(cfg, base_model=str(b)))


def test_precision_and_revision_count(tmp_path):
    cfg = AgentConfig(backend="hf", base_model=str(_model(tmp_path / "m", b"w")), use_cache=False)
    prints = {fingerprint(cfg), fingerprint(dataclasses.replace(cfg, load_in_4bit=True)),
              fingerprint(dataclasses.replace(cfg, load_in_8bit=True)),
              fingerprint(dataclasses.replace(cfg, dtype="float16"))}
    assert len(prints) == 4
    hub = AgentConfig(backend="hf", base_model="Qwen/Qwen2.5-7B-Instruct", use_cache=False)
    assert fingerprint(hub) != fingerprint(dataclasses.replace(hub, revision="a" * 40))


def test_weight_digests_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    folder = _model(tmp_path / "m", b"x" * 4096)
    cfg = AgentConfig(backend="hf", base_model=str(folder), cache_dir=str(tmp_path / "cache"))
    first = fingerprint(cfg)
    monkeypatch.setattr(cache, "_DIGESTS", {})  # a new process: the digest comes from the memo file
    weights = folder / "model-00001-of-00001.safetensors"
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(os.fspath(p)) or real_open(p, *a, **k))
    assert fingerprint(cfg) == first
    assert str(weights) not in opened


def test_a_local_clip_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    weights = tmp_path / "clip.pt"  # a local CLIP file is named by its content: read once, then remembered
    weights.write_bytes(b"c" * 4096)
    first = DeferredClipEncoder(str(weights), cache_dir=tmp_path / "cache").fingerprint
    monkeypatch.setattr(cache, "_DIGESTS", {})  # a new process
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(os.fspath(p)) or real_open(p, *a, **k))
    assert DeferredClipEncoder(str(weights), cache_dir=tmp_path / "cache").fingerprint == first
    assert str(weights) not in opened
    weights.write_bytes(b"d" * 4096)  # new bytes of the same size: a new mtime, so hashed again
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert DeferredClipEncoder(str(weights), cache_dir=tmp_path / "cache").fingerprint != first
    assert str(weights) in opened

