"""CLIP text features of descriptions: OpenAI ``clip`` (PyPI ``openai-clip``), ViT-B/32 by default.

    encoder = load_clip_text_encoder("ViT-B/32")     # or a local .pt file; loaded once per process
    feats = encoder.encode(["The face shows ...", ...])   # float32 [N, 512], each row L2-normalised

Texts are tokenized with ``truncate=True`` (CLIP's context is 77 tokens), encoded (fp16 on GPU, as
``clip.load`` builds it; fp32 on CPU) and cached by (weights fingerprint, text): a repeated description
(neutral frames, the same AU input in another video or epoch) is encoded once.

Batch invariance: the model only ever sees batches of exactly :data:`MICRO_BATCH` rows (the last one padded
with empty texts), so every text goes through kernels of one shape and gets the same bytes whether it is
encoded alone, inside a corpus, or with any ``batch_size``, with or without the cache. Batched BLAS kernels
otherwise pick a different reduction order per batch shape (about 1e-7 apart). Padding a lone text costs
little: on CPU the tiny test CLIP encodes 256 texts in 16-row micro-batches faster than in one 256-row batch.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

from au_core.errors import AUAgentError

from .. import per_process
from ..agent.cache import SQLiteCache, default_cache_dir, digest_memo, file_sha256
from ..config_access import PathArg

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CLIP = "ViT-B/32"
FEATURE_CACHE = "clip_text_features.sqlite"
MICRO_BATCH = 16  # rows of every forward pass (see module docstring)
#: Text-embedding width of each released OpenAI CLIP model (``embed_dim`` of ``clip.model.CLIP``), so the AU
#: feature width is known without loading weights.
RELEASED_WIDTHS = {"RN50": 1024, "RN101": 512, "RN50x4": 640, "RN50x16": 768, "RN50x64": 1024,
                   "ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768, "ViT-L/14@336px": 768}


def clip_fingerprint(name_or_path: str, memo: Optional[SQLiteCache] = None) -> str:
    """Released models are named by the sha256 in their download URL; local files by their content, hashed once
    per file version with ``memo`` (:func:`~.cache.digest_memo`). No torch is imported: a finished rerun
    checks fingerprints and loads nothing."""
    if name_or_path not in RELEASED_WIDTHS and Path(name_or_path).is_file():
        return file_sha256(name_or_path, memo)[:24]
    import clip

    if name_or_path in clip.available_models():
        match = re.search(r"/([0-9a-f]{64})/", clip.clip._MODELS[name_or_path])
        return match.group(1)[:24] if match else name_or_path
    return file_sha256(name_or_path, memo)[:24]


def clip_text_width(name_or_path: str) -> int:
    """The width of the features a CLIP model gives: from the table for a released model, else by loading it."""
    if name_or_path in RELEASED_WIDTHS:
        return RELEASED_WIDTHS[name_or_path]
    return load_clip_text_encoder(name_or_path).dim


def check_clip_name(name_or_path: str) -> None:
    """Refuse, naming it, what is neither a released CLIP model nor a file (before anything is loaded)."""
    import clip

    if name_or_path not in clip.available_models() and not Path(name_or_path).is_file():
        raise AUAgentError(f"not a CLIP model name ({', '.join(clip.available_models())}) nor a file", name_or_path)


class ClipTextEncoder:
    def __init__(self, name_or_path: str = DEFAULT_CLIP, device: Optional[str] = None,
                 cache_dir: Optional[PathArg] = None, use_cache: bool = True) -> None:
        import clip
        import torch

        self.name = str(name_or_path)
        check_clip_name(self.name)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model, _ = clip.load(self.name, device=self.device, jit=False)
        except (OSError, RuntimeError) as e:  # URLError is an OSError: offline without a local copy
            raise AUAgentError(f"cannot load CLIP ({str(e).splitlines()[0][:200]}); put the weights in "
                               f"~/.cache/clip or pass a local file", self.name) from None
        self.model.eval()
        self.fingerprint = clip_fingerprint(self.name, digest_memo(cache_dir) if use_cache else None)
        self.dim = int(self.model.text_projection.shape[1])
        self.cache = SQLiteCache(Path(cache_dir or default_cache_dir()) / FEATURE_CACHE) if use_cache else None
        self.encoded = 0  # texts encoded by the model in this process
        self._clip, self._torch = clip, torch

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Features of ``texts``, computed in passes of exactly ``MICRO_BATCH`` rows."""
        import numpy as np  # not at import time: a finished rerun never encodes

        torch = self._torch
        out = []
        for start in range(0, len(texts), MICRO_BATCH):
            chunk = list(texts[start:start + MICRO_BATCH])
            padded = chunk + [""] * (MICRO_BATCH - len(chunk))
            tokens = self._clip.tokenize(padded, truncate=True).to(self.device)
            with torch.no_grad():
                feats = self.model.encode_text(tokens).float()
                feats = feats / feats.norm(dim=-1, keepdim=True)
            out.append(feats[:len(chunk)].cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """``[len(texts), dim]`` float32 L2-normalised features, in order."""
        import numpy as np  # not at import time: a finished rerun never encodes
        from tqdm import tqdm

        unique = list(dict.fromkeys(texts))
        known: Dict[str, np.ndarray] = {}
        if self.cache is not None and unique:
            for text, blob in self.cache.get_many(self.fingerprint, unique).items():
                known[text] = np.frombuffer(blob, dtype=np.float32)
        todo = [t for t in unique if t not in known]
        for start in tqdm(range(0, len(todo), batch_size), desc="CLIP text", unit="batch",
                          disable=not progress or len(todo) <= batch_size):
            chunk = todo[start:start + batch_size]
            fresh = dict(zip(chunk, self._encode_batch(chunk)))
            if self.cache is not None:  # another process's vector where it stored the text first
                stored = self.cache.put_many(self.fingerprint, {t: v.tobytes() for t, v in fresh.items()})
                fresh = {t: np.frombuffer(stored[t], dtype=np.float32) for t in chunk}
            known.update(fresh)
        self.encoded += len(todo)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[t] for t in texts]).astype(np.float32, copy=False)


def load_clip_text_encoder(name_or_path: str = DEFAULT_CLIP, device: Optional[str] = None,
                           cache_dir: Optional[PathArg] = None, use_cache: bool = True) -> ClipTextEncoder:
    """One encoder per process and setting, shared by repeated calls (:mod:`affectgpt_patch.per_process`): a
    forked DataLoader worker builds its own instead of using its parent's (a CUDA model does not survive a fork)."""
    key = ("ClipTextEncoder", str(name_or_path), device, str(cache_dir) if cache_dir else None, use_cache)
    return per_process.once(key, lambda: ClipTextEncoder(name_or_path, device, cache_dir, use_cache))


def local_vit_b32() -> Optional[Path]:
    """The released ViT-B/32 file if it is already in the local CLIP cache (no download)."""
    path = Path(os.path.expanduser("~/.cache/clip")) / "ViT-B-32.pt"
    return path if path.is_file() else None


class DeferredClipEncoder:
    """A :class:`ClipTextEncoder` that loads CLIP (and torch) only for a text missing from the feature cache: its
    fingerprint comes from the name or file, and cached vectors are read without the model. A finished
    ``precompute`` rerun therefore loads no CLIP."""

    def __init__(self, name_or_path: str = DEFAULT_CLIP, device: Optional[str] = None,
                 cache_dir: Optional[PathArg] = None, use_cache: bool = True) -> None:
        self.name = str(name_or_path)
        self._args: Tuple[Optional[str], Optional[PathArg], bool] = (device, cache_dir, use_cache)
        if self.name not in RELEASED_WIDTHS and not Path(self.name).is_file():
            check_clip_name(self.name)  # one line naming what is neither
        self.fingerprint = clip_fingerprint(self.name, digest_memo(cache_dir) if use_cache else None)
        self.cache = SQLiteCache(Path(cache_dir or default_cache_dir()) / FEATURE_CACHE) if use_cache else None
        self._encoder: Optional[ClipTextEncoder] = None
        self._dim: Optional[int] = RELEASED_WIDTHS.get(self.name)

    def _loaded(self) -> ClipTextEncoder:
        if self._encoder is None:
            self._encoder = load_clip_text_encoder(self.name, *self._args)
        return self._encoder

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._loaded().dim
        return self._dim

    @property
    def encoded(self) -> int:
        return self._encoder.encoded if self._encoder is not None else 0

    def encode(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        import numpy as np  # not at import time: a finished rerun never encodes

        if self._encoder is None and self.cache is not None and texts:
            found = self.cache.get_many(self.fingerprint, texts)
            if len(found) == len(set(texts)):
                vectors = {t: np.frombuffer(b, dtype=np.float32) for t, b in found.items()}
                self._dim = self._dim or len(next(iter(vectors.values())))
                return np.stack([vectors[t] for t in texts])
        return self._loaded().encode(texts, batch_size=batch_size, progress=progress)
