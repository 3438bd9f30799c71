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
TESTS = REPO / "tests"
SAMPLES = REPO / "samples"

#: The test files of the code that runs inside AffectGPT's environment: the mixin and what it reaches, the agent
#: runtime and its backends, CLIP, frames, the cache, precompute, the AU branch template, the smoke shims and the
#: au_core modules they import. `make test-affectgpt-env` (``pytest --affectgpt-stack``) collects these files, and only
#: these, on AffectGPT's own stack (Python 3.10, torch 2.4, transformers 4.49, peft 0.13, omegaconf 2.3). A test file
#: of such code joins with one line here; a test in it that needs the main venv's packages (LLaMA-Factory, Ray) is
#: marked ``@pytest.mark.main_venv_only``.
AFFECTGPT_STACK_FILES = frozenset({
    "test_agent_card.py",
    "test_agent_hf.py",
    "test_agent_openai.py",
    "test_agent_rules.py",
    "test_atomic.py",
    "test_au_branch.py",
    "test_cache.py",
    "test_caption.py",
    "test_clip_encoder.py",
    "test_contract.py",
    "test_facs.py",
    "test_feature_source.py",
    "test_features.py",
    "test_fingerprint.py",
    "test_frames.py",
    "test_import_boundaries.py",
    "test_mixin.py",
    "test_openface.py",
    "test_precompute.py",
    "test_smoke_affectgpt.py",
    "test_stack_identity.py",
    "test_text_route.py",
})


def pytest_addoption(parser) -> None:
    parser.addoption("--affectgpt-stack", action="store_true",
                     help="collect only the tests of the code that runs inside AffectGPT (AFFECTGPT_STACK_FILES in "
                          "tests/conftest.py), without those marked main_venv_only")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "affectgpt_stack: a test of code that runs inside AffectGPT (set from "
                                       "AFFECTGPT_STACK_FILES in tests/conftest.py)")
    config.addinivalue_line("markers", "main_venv_only: needs the main venv's packages (LLaMA-Factory, Ray); "
                                       "not collected by --affectgpt-stack")
    missing = sorted(name for name in AFFECTGPT_STACK_FILES if not (TESTS / name).is_file())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: AFFECTGPT_STACK_FILES names missing test files: {missing}")


def _on_affectgpt_stack(path: Path) -> bool:
    return path.parent == TESTS and path.name in AFFECTGPT_STACK_FILES


def pytest_ignore_collect(collection_path: Path, config):
    """Under ``--affectgpt-stack`` the other test files are not even imported: they may need LLaMA-Factory or Ray."""
    if (config.getoption("--affectgpt-stack") and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_") and not _on_affectgpt_stack(collection_path)):
        return True
    return None


def pytest_collection_modifyitems(config, items) -> None:
    stack_only = config.getoption("--affectgpt-stack")
    kept, dropped = [], []
    for item in items:
        if _on_affectgpt_stack(Path(str(item.fspath))):
            item.add_marker(pytest.mark.affectgpt_stack)
        (dropped if stack_only and item.get_closest_marker("main_venv_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
