"""A tiny random CLIP saved the way OpenAI releases theirs (a TorchScript archive), so ``clip.load(path)``
loads it exactly like ``ViT-B-32.pt``. Its text tower has the real tokenizer, context length (77) and output
width (512); everything else is shrunk (one layer, width 64), so it builds in a second and runs anywhere.
Used by the tests, the benchmark and the demo when the real weights are not in the local CLIP cache.

    python -m au_standins.tiny_clip tiny_clip.pt
"""
from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)


def build_tiny_clip(path: Path, embed_dim: int = 512, seed: int = 0) -> Path:
    import torch
    from clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(embed_dim=embed_dim, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=1).eval()
    image = torch.zeros(1, 3, 32, 32)
    text = torch.zeros(1, 77, dtype=torch.long)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warns about shape checks that are constant for this model
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    torch.jit.save(traced, str(path))
    log.info("tiny CLIP written to %s", path)
    return path


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_tiny_clip(args.out)


if __name__ == "__main__":
    main()
