"""The configs of the text route (the AU caption in the prompt), beside the feature route's :mod:`.configs`:

upstream checkouts (au-agent's mixin, ``au_route: text``):

* ``train_configs/config_with_au_text.yaml`` — training with the caption, no AU tokens;
* ``inference_config_au_text.yaml`` — inference of that training run;
* ``inference_config_au_text_released.yaml`` — the released checkpoint, unchanged weights, with the caption:
  ``inference_hybird.py`` / ``inference_sample.py --zeroshot`` with ``inference.ckpt_root`` set to its folder;

the AU fork's "Nonverbal" commits (``ouyangjutian/AffectGPT`` 88593b0; their own code, no edits):

* ``train_configs/config_with_au_captions.yaml`` and ``inference_config_au_captions.yaml`` —
  ``use_nonverbal_text: true`` and ``nonverbal_json`` pointing at the file ``au-agent captions`` writes.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from au_core.errors import AUAgentError

from ..captions.caption import DEFAULT_MAX_TOKENS

TEXT_TRAIN_CONFIG = "train_configs/config_with_au_text.yaml"
TEXT_INFERENCE_CONFIG = "inference_config_au_text.yaml"
RELEASED_INFERENCE_CONFIG = "inference_config_au_text_released.yaml"
TEXT_GENERATED = (TEXT_TRAIN_CONFIG, TEXT_INFERENCE_CONFIG, RELEASED_INFERENCE_CONFIG)
NONVERBAL_TRAIN_CONFIG = "train_configs/config_with_au_captions.yaml"
NONVERBAL_INFERENCE_CONFIG = "inference_config_au_captions.yaml"
NONVERBAL_GENERATED = (NONVERBAL_TRAIN_CONFIG, NONVERBAL_INFERENCE_CONFIG)

TEXT_KEYS_HELP = (
    "#\n# Text route keys (au-agent's mixin):\n"
    "#   au_route             features | text | both: AU tokens (the AU branch), the AU caption as text before\n"
    "#                        the subtitle (no AU branch needed), or both\n"
    "#   au_text_max_tokens   the caption budget `au-agent precompute --au-text-max-tokens` used (default "
    f"{DEFAULT_MAX_TOKENS});\n"
    "#                        captions are read from au_precomputed_dir/{video}.json\n")


def _yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)


def _copy(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(OmegaConf.to_container(cfg))


def with_au(mode: str) -> str:
    """``multiface_audio_face_text`` → ``multiface_audio_face_au_text`` (an AU mode stays as it is)."""
    parts = mode.split("_")
    if "au" in parts or len(parts) < 2 or parts[-1] != "text":
        return mode
    return "_".join(parts[:-1] + ["au", parts[-1]])


def text_keys(route: str = "text") -> Dict[str, object]:
    return {"au_route": route, "au_text_max_tokens": DEFAULT_MAX_TOKENS}


def _set(section: Any, keys: Dict[str, object]) -> None:
    for key, value in keys.items():
        section[key] = value


def upstream_text_configs(train_cfg: Any, infer_cfg: Any, base_cfg: Any, au_keys: Dict[str, object], header
                          ) -> Dict[str, str]:
    """The three text-route configs from the feature route's training and inference configs (``train_cfg``,
    ``infer_cfg``) and the checkout's base config (``base_cfg``, for the released checkpoint). ``header(title,
    extra)`` writes the comment block."""
    train = _copy(train_cfg)
    for name in train.datasets:
        _set(train.datasets[name], text_keys())
    infer = _copy(infer_cfg)
    _set(infer.inference, text_keys())
    for name in infer.datasets:
        _set(infer.datasets[name], text_keys())
    released = _copy(base_cfg)  # the released model's own mode, plus AU (as text): the weights it was trained for
    modes = {with_au(str(released.datasets[name].get("face_or_frame"))) for name in released.datasets}
    mode = modes.pop() if len(modes) == 1 else str(au_keys["face_or_frame"])
    for name in released.datasets:
        released.datasets[name].face_or_frame = mode
    _set(released.inference, {**au_keys, **text_keys(), "face_or_frame": mode})
    run = ("#   python inference_hybird.py --zeroshot --dataset inferenceData --cfg-path {cfg} \\\n"
           "#       --options inference.ckpt_root=<folder of checkpoint_*.pth> \"inference.test_epochs=30-60\"\n"
           "#   python inference_sample.py --zeroshot --cfg-path {cfg} --options inference.ckpt_root=<...> \\\n"
           "#       --video_path clip.mp4 --audio_path clip.wav --subtitle '...'   (clip = the precomputed name)\n")
    return {
        TEXT_TRAIN_CONFIG: header("AffectGPT training with the AU caption as text (au_route: text).",
                                  TEXT_KEYS_HELP) + _yaml(train),
        TEXT_INFERENCE_CONFIG: header("AffectGPT inference with the AU caption as text (au_route: text).",
                                      TEXT_KEYS_HELP + "#\n# Set inference.ckpt_root to the training run's folder:\n"
                                      + run.format(cfg=TEXT_INFERENCE_CONFIG)) + _yaml(infer),
        RELEASED_INFERENCE_CONFIG: header(
            "The released AffectGPT checkpoint, unchanged, with the AU caption as text (au_route: text).",
            TEXT_KEYS_HELP + "#\n# No new weights: the caption is text. Point inference.ckpt_root at the released "
            "checkpoint's folder:\n" + run.format(cfg=RELEASED_INFERENCE_CONFIG)) + _yaml(released),
    }


def nonverbal_configs(cfg: Any, mode: str, captions_file: Optional[str], header) -> Dict[str, str]:
    """The AU fork's own Nonverbal mode fed by au-agent's captions (``au-agent captions`` output)."""
    if not captions_file:
        raise AUAgentError("--captions: the AU fork's Nonverbal mode reads its captions from a file (without "
                           "one it silently gives no caption); write it with `au-agent captions --features DIR "
                           "--dataset-name MERCaptionPlus --out FILE`")
    path = os.path.abspath(os.path.expanduser(captions_file))
    keys = {"face_or_frame": mode, "use_nonverbal_text": True, "nonverbal_json": path}
    train = _copy(cfg)
    for name in train.datasets:
        _set(train.datasets[name], keys)
    _set(train.inference, {k: v for k, v in keys.items() if k != "face_or_frame"})
    infer = _copy(train)
    _set(infer.inference, keys)
    infer.inference.ckpt_root = "xxx"
    extra = ("#\n# The fork's Nonverbal keys (its own code reads them; au-agent edits none of it):\n"
             "#   use_nonverbal_text   true: the caption goes into the prompt as <Nonverbal>{caption}</Nonverbal>\n"
             "#   nonverbal_json       {dataset: {video: {\"caption\": text}}}, written by\n"
             "#                        au-agent captions --features <precompute output> --dataset-name MERCaptionPlus "
             "--out FILE\n")
    return {
        NONVERBAL_TRAIN_CONFIG: header("AffectGPT (AU fork, Nonverbal) training with au-agent's AU captions.",
                                       extra) + _yaml(train),
        NONVERBAL_INFERENCE_CONFIG: header(
            "AffectGPT (AU fork, Nonverbal) inference with au-agent's AU captions.",
            extra + "#   python inference_hybird.py --cfg-path inference_config_au_captions.yaml "
                    "--options inference.ckpt_root=<run folder>\n") + _yaml(infer),
    }
