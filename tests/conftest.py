"""Shared fixtures. Heavy artefacts (the tiny Qwen2, its trained adapter, the tiny CLIP) are built once per
test session, offline, from code in this repository; nothing is downloaded."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny models gain nothing from intra-op threads, and threads spinning on a busy 2-core machine cost a lot.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The instruction dataset built from the bundled samples (read-only: copy before changing it)."""
    from data_prep.build import PrepareOptions, prepare_dataset

    out = tmp_path_factory.mktemp("dataset") / "au_dataset"
    prepare_dataset(PrepareOptions(out=out, mer_factory_output=SAMPLES / "mer_factory",
                                   openface_dir=SAMPLES / "openface", progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, sample_dataset) -> Path:
    """A tiny random Qwen2 model + tokenizer whose BPE knows the sample dataset's words."""
    from au_standins.tiny_qwen2 import build_tiny_qwen2, dataset_texts

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "tiny-qwen2",
                            dataset_texts([sample_dataset / "train.json"]))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP saved as a TorchScript archive, loaded through ``clip.load(path)`` like ViT-B-32.pt."""
    from au_standins.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")


@pytest.fixture()
def cache_dir(tmp_path) -> Path:
    """A fresh, empty description / CLIP-feature cache for one test."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, sample_dataset, tiny_qwen2) -> Path:
    """``au-agent train`` with ``tiny_cpu_lora_sft.yaml`` on the sample dataset (12 steps, eval and save every 4):
    the output folder with ``checkpoint-best/`` and ``agent_card.json`` (read-only: copy before changing it)."""
    import au_agent_cli

    out = tmp_path_factory.mktemp("agent") / "tiny_agent"
    rc = au_agent_cli.main(["-q", "train", "--recipe", "tiny_cpu_lora_sft", "--dataset", str(sample_dataset),
                            "--base-model", str(tiny_qwen2), "--out", str(out)])
    log = out / "train.log"
    assert rc == 0, log.read_text(errors="replace")[-4000:] if log.is_file() else "training did not start"
    return out


@pytest.fixture()
def quiet_transformers():
    """Undo LLaMA-Factory's argument parsers turning transformers' logging up to INFO (it would flood the
    stderr that later tests read)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    yield
    hf_logging.set_verbosity(level)
    hf_logging.reset_format()


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    """The fixture AffectGPT checkouts' LLM: a tiny random Qwen2 with a small byte-level BPE tokenizer."""
    from fixtures.affectgpt import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """MER-Caption+-shaped data for the fixture checkouts (labels, subtitles, media stand-ins)."""
    from fixtures.affectgpt import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data"))
