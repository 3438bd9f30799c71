"""The OpenAI clip package loading a tiny CLIP the tests saved to a local file."""
import os

import numpy as np
import pytest

from affectgpt_patch import per_process
from affectgpt_patch.features.clip_encoder import ClipTextEncoder, load_clip_text_encoder
from au_core.errors import AUAgentError

TEXTS = ["The face shows raised cheeks (moderate).", "A neutral face.", "Brows lowered, lips pressed.",
         "word " * 200]  # longer than CLIP's 77-token context: truncated, not an error


def test_shape_norm_and_determinism(tiny_clip, cache_dir):
    enc = ClipTextEncoder(str(tiny_clip), device="cpu", cache_dir=cache_dir, use_cache=False)
    a = enc.encode(TEXTS)
    assert a.shape == (4, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, enc.encode(TEXTS))
    assert not np.allclose(a[0], a[1])


def test_batch_size_independence(tiny_clip, cache_dir):
    """Byte for byte, without the cache: alone, in a crowd, at any batch size and position."""
    enc = ClipTextEncoder(str(tiny_clip), device="cpu", cache_dir=cache_dir, use_cache=False)
    one = np.concatenate([enc.encode([t]) for t in TEXTS])
    crowd = [f"Other face {i}: lips parted, brows raised." for i in range(37)]
    for batch_size in (1, 3, 16, 256):
        assert enc.encode(TEXTS, batch_size=batch_size).tobytes() == one.tobytes()
    assert enc.encode(crowd[:21] + TEXTS + crowd[21:])[21:25].tobytes() == one.tobytes()


def test_cache_returns_the_first_vector(tiny_clip, cache_dir):
    enc = ClipTextEncoder(str(tiny_clip), device="cpu", cache_dir=cache_dir)
    first = enc.encode(TEXTS[:2])
    again = ClipTextEncoder(str(tiny_clip), device="cpu", cache_dir=cache_dir)
    np.testing.assert_array_equal(again.encode(TEXTS[:2]), first)
    assert again.encoded == 0 and again.cache.stats()["hits"] == 2
    assert enc.fingerprint == again.fingerprint and len(enc.fingerprint) == 24


def test_loaded_once_per_process(tiny_clip, cache_dir):
    first = load_clip_text_encoder(str(tiny_clip), "cpu", cache_dir)
    assert load_clip_text_encoder(str(tiny_clip), "cpu", cache_dir) is first
    per_process.reset()  # what a new process starts with
    assert load_clip_text_encoder(str(tiny_clip), "cpu", cache_dir) is not first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="DataLoader workers are forked where fork exists")
def test_a_forked_worker_builds_its_own_model():
    """A DataLoader worker forked after its parent built a model (a CUDA one would not survive the fork) builds
    its own instead of using the parent's."""
    parent = per_process.once(("test", "model"), object)
    pid = os.fork()
    if pid == 0:  # the worker
        os._exit(0 if per_process.once(("test", "model"), object) is not parent else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert per_process.once(("test", "model"), object) is parent


def test_unknown_model(tmp_path):
    with pytest.raises(AUAgentError, match="not a CLIP model name"):
        ClipTextEncoder(str(tmp_path / "nope.pt"))
