"""Which AffectGPT checkout this is: where the code lives (layout) and whether it already has AU (variant).

Layouts: upstream keeps the code in ``<repo>/AffectGPT/`` (beside ``OV-MER/``); several forks flatten it to the
repository root. Variants: ``upstream`` (no AU anywhere) and ``au-fork`` (the ouyangjutian fork: ``<AUHere>``
in ``config.py``, AU sources in ``BaseDataset``, an AU branch in the model) and ``nonverbal-fork`` (that fork's
later commits, e.g. 88593b0, which replaced the AU features with a text caption read from ``nonverbal_json``
and kept parts of the AU model: its own code reads au-agent's captions, so only configs are written).
Anything else in between is refused, because no set of edits fits it.

The variant is read from the *original* files (the backups, once the checkout has been patched).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from au_core.errors import AUAgentError

from . import affectgpt_model, base_dataset, config_py
from .source import Mismatch, Source

UPSTREAM, AU_FORK, NONVERBAL = "upstream", "au-fork", "nonverbal-fork"
NESTED_DIR = "AffectGPT"
VARIANT_TEXT = {UPSTREAM: "upstream AffectGPT without AU", AU_FORK: "AU fork (ouyangjutian/AffectGPT, AU features)",
                NONVERBAL: "AU fork, Nonverbal commits (ouyangjutian/AffectGPT after 447851e, AU as a text caption)"}
#: What the fork's Nonverbal commits (572d8de, 88593b0) put in BaseDataset: the caption file and its reader.
NONVERBAL_MARKERS = ("nonverbal_json", "use_nonverbal_text", "def get_nonverbal_text")


@dataclass(frozen=True)
class Checkout:
    root: Path  # the path the user gave
    code_root: Path  # where config.py and my_affectgpt/ live
    variant: str

    @property
    def layout(self) -> str:
        return f"code under {NESTED_DIR}/" if self.code_root != self.root else "code at the repository root"

    def rel(self, code_path: str) -> str:
        """A code-root-relative path as a path relative to the checkout root (how the manifest names files)."""
        return (self.code_root / code_path).relative_to(self.root).as_posix()

    def describe(self) -> str:
        return f"{self.root}: {self.layout}; {VARIANT_TEXT[self.variant]}"


def find_code_root(root: Path) -> Path:
    marker = Path(base_dataset.PATH)
    flat, nested = root / marker, root / NESTED_DIR / marker
    if flat.is_file() and nested.is_file():
        raise AUAgentError(f"both {marker} and {NESTED_DIR}/{marker} exist: which one is the code?", root)
    if flat.is_file():
        return root
    if nested.is_file():
        return root / NESTED_DIR
    raise AUAgentError(f"not an AffectGPT checkout: expected {marker} at the root or under {NESTED_DIR}/", root)


def detect_variant(read: Callable[[str], str]) -> str:
    """``read(code_path)`` returns a file's original text."""
    found = {}
    for label, path, probe in (("<AUHere> in config.py", config_py.PATH, config_py.defines_au_token),
                               ("AU sources in BaseDataset", base_dataset.PATH, base_dataset.has_dataset_au),
                               ("an AU branch in AffectGPT", affectgpt_model.PATH, affectgpt_model.has_model_au)):
        try:
            found[label] = probe(Source(read(path), path))
        except Mismatch as e:
            raise AUAgentError(f"unexpected structure: {e}", path) from None
    if all(k in read(base_dataset.PATH) for k in NONVERBAL_MARKERS):
        return NONVERBAL
    if all(found.values()):
        return AU_FORK
    if not any(found.values()):
        return UPSTREAM
    has = ", ".join(k for k, v in found.items() if v)
    lacks = ", ".join(k for k, v in found.items() if not v)
    raise AUAgentError(f"partial AU code (has: {has}; lacks: {lacks}). This is neither upstream AffectGPT nor the "
                       f"AU fork (its commits after 447851e replaced the AU features with a text caption); "
                       f"nothing was changed")


def detect(root: Path, read: Callable[[Path, str], str]) -> Checkout:
    """``read(code_root, code_path)`` returns a file's original text."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise AUAgentError("no such folder", root)
    code_root = find_code_root(root)
    return Checkout(root, code_root, detect_variant(lambda p: read(code_root, p)))
