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
    from llamafactory_configs.tiny_qwen2 import build_tiny_qwen2, dataset_texts

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "tiny-qwen2",
                            dataset_texts([sample_dataset / "train.json"]))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
