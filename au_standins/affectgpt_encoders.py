"""Tiny random stand-ins for the models AffectGPT loads from ``config.py``, built offline in seconds (for
``au-agent smoke-affectgpt``, which points a checkout copy's ``config.py`` at them).

* the LLM: the tiny Qwen2 of :mod:`.tiny_qwen2` (slow ``Qwen2Tokenizer`` loads,
  ``<|im_start|>`` exists for AffectGPT to use as BOS);
* the visual encoder: a Hugging Face ``CLIPModel`` folder with a ``CLIPImageProcessor``
  ``preprocessor_config.json`` (AffectGPT's ``CLIP_VIT_LARGE`` loads both with ``AutoModel`` /
  ``AutoFeatureExtractor`` and uses ``get_image_features``);
* the audio encoder: a ``HubertModel`` folder with a ``Wav2Vec2FeatureExtractor`` config (AffectGPT's
  ``HUBERT_LARGE`` averages the last four hidden states, so it needs at least three layers).

The weights are random: the smoke test checks plumbing, not quality.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SIZE = 32  # CLIP input side; AffectGPT's processor resizes every frame to it
HUBERT_MIN_LAYERS = 3  # AffectGPT stacks hidden_states[-4:], which is 4 entries only with >= 3 layers


@dataclass(frozen=True)
class StandIns:
    llm: Path
    visual: Path
    audio: Path


def build_llm(out_dir: Path, seed: int = 0) -> Path:
    from .tiny_qwen2 import build_tiny_qwen2

    return build_tiny_qwen2(Path(out_dir), seed=seed)


def build_visual_encoder(out_dir: Path, projection_dim: int = 48, seed: int = 0) -> Path:
    """A ``CLIPModel`` folder (one layer per tower, 32 px images) plus its image processor config."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=16),
        projection_dim=projection_dim)
    CLIPModel(cfg).save_pretrained(out_dir)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                       crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(out_dir)
    log.info("tiny CLIPModel written to %s", out_dir)
    return out_dir


def build_audio_encoder(out_dir: Path, num_layers: int = HUBERT_MIN_LAYERS, seed: int = 0) -> Path:
    """A ``HubertModel`` folder with small convolutions plus a 16 kHz ``Wav2Vec2FeatureExtractor`` config."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    if num_layers < HUBERT_MIN_LAYERS:
        raise ValueError(f"AffectGPT averages the last 4 hidden states: need >= {HUBERT_MIN_LAYERS} layers")
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                       feat_extract_norm="group", do_stable_layer_norm=False)
    HubertModel(cfg).save_pretrained(out_dir)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(out_dir)
    log.info("tiny HubertModel written to %s", out_dir)
    return out_dir


def build_standins(root: Path, seed: int = 0) -> StandIns:
    root = Path(root)
    return StandIns(llm=build_llm(root / "llm", seed), visual=build_visual_encoder(root / "visual", seed=seed),
                    audio=build_audio_encoder(root / "audio", seed=seed))
