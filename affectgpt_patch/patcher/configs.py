"""The two configs the patcher adds, built with OmegaConf from the checkout's own released training config:

* ``train_configs/config_with_au_agent.yaml`` — ``python train.py --cfg-path train_configs/config_with_au_agent.yaml``;
* ``inference_config_au_agent.yaml`` — the same model and datasets, with the AU settings also under
  ``inference:`` for ``inference_hybird.py`` / ``inference_sample.py``.

Every dataset of the base config gets the seed guide's keys (``face_or_frame``, ``use_au_agent``,
``au_agent_base_model``, ``au_agent_lora_weights``, ``au_agent_use_lora``, ``openface_output_dir``,
``mer_factory_output``) plus ``au_agent_dir`` / ``au_precomputed_dir``; the model gets the AU branch's keys
where the base config lacks them. OmegaConf drops comments, so each file starts with a header explaining them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from au_core.errors import AUAgentError

from ..branch_template import branch_constants
from ..features.source import SourceSettings
from ..mixin import SEED_AGENT_KEYS, SETTINGS, is_au_mode, mode_without_au
from . import text_configs

log = logging.getLogger(__name__)

TRAIN_CONFIG = "train_configs/config_with_au_agent.yaml"
INFERENCE_CONFIG = "inference_config_au_agent.yaml"
GENERATED = (TRAIN_CONFIG, INFERENCE_CONFIG)
UPSTREAM, AU_FORK, NONVERBAL = "upstream", "au-fork", "nonverbal-fork"  # as patcher.detect names them


def generated_paths(variant: str) -> "tuple[str, ...]":
    """The configs the patcher writes into a checkout of this variant."""
    if variant == NONVERBAL:
        return text_configs.NONVERBAL_GENERATED
    return GENERATED + (text_configs.TEXT_GENERATED if variant == UPSTREAM else ())
CONFIG_DIR = "train_configs"
RELEASED = "emercoarse_highlevelfilter4_outputhybird_bestsetup_bestfusion_lz.yaml"  # upstream's released setup
SECTIONS = ("model", "datasets", "run", "inference")
SEED_MODE = "multiface_audio_face_frame_au_text"  # the seed guide's face_or_frame


@dataclass
class ConfigOptions:
    """What the user may pass to fill the configs in (everything else stays a null placeholder)."""

    face_or_frame: Optional[str] = None
    base_config: Optional[str] = None
    agent_dir: Optional[str] = None
    openface_dir: Optional[str] = None
    mer_factory_output: Optional[str] = None
    precomputed_dir: Optional[str] = None
    captions_file: Optional[str] = None  # `au-agent captions` output, for the AU fork's Nonverbal mode


def _load(path: Path):
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - YAML and OmegaConf errors alike
        raise AUAgentError(f"cannot read the config: {e}", path) from None
    missing = [s for s in SECTIONS if s not in cfg]
    if missing:
        raise AUAgentError(f"not an AffectGPT training config: no {', '.join(missing)} section "
                           f"(Config asserts all of {', '.join(SECTIONS)})", path)
    if not cfg.datasets:
        raise AUAgentError("the datasets section is empty", path)
    return cfg


def choose_base(code_root: Path, variant: str, requested: Optional[str]) -> Path:
    """``--base-config`` if given; else the AU fork's own AU config, upstream's released config, or the first
    complete training config in ``train_configs/`` (never one this patcher wrote)."""
    if requested:
        for candidate in (Path(requested), code_root / requested, code_root / CONFIG_DIR / requested):
            if candidate.is_file():
                return candidate
        raise AUAgentError("base config not found (give a path, or a file name in train_configs/)", requested)
    folder = code_root / CONFIG_DIR
    names = sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else []
    names = [n for n in names if f"{CONFIG_DIR}/{n}" not in generated_paths(variant) + GENERATED]
    if not names:
        raise AUAgentError("no training configs (*.yaml) to start from", folder)
    ranked: List[str] = []
    if variant == AU_FORK:
        ranked += [n for n in names if "_au" in n and "nonverbal" not in n.lower()]
    if variant == NONVERBAL:
        ranked += [n for n in names if "_frame_au_nonverbal" in n.lower()]
        ranked += [n for n in names if "nonverbal" in n.lower()]
    ranked += [n for n in names if n == RELEASED] + names
    for name in ranked:
        try:
            _load(folder / name)
            return folder / name
        except AUAgentError:
            continue
    raise AUAgentError(f"none of the configs has all of {', '.join(SECTIONS)}", folder)


def _mode(options: ConfigOptions, known_modes: set, variant: str, path: str) -> str:
    mode = options.face_or_frame or SEED_MODE
    if not is_au_mode(mode):
        raise AUAgentError(f"face_or_frame {mode!r} has no 'au' part (e.g. {SEED_MODE})", path)
    needed = mode if variant in (AU_FORK, NONVERBAL) else mode_without_au(mode)
    if needed not in known_modes:
        raise AUAgentError(f"face_or_frame {mode!r}: BaseDataset.get_needed_data does not know {needed!r} "
                           f"(it knows {', '.join(sorted(known_modes))})", path)
    return mode


def _abs(path: Optional[str]) -> Optional[str]:
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _warn_missing(options: ConfigOptions) -> None:
    """Paths are written as given (the checkout may be used on another machine), but say when they are absent."""
    for flag, path in (("--agent", options.agent_dir), ("--openface-dir", options.openface_dir),
                       ("--precomputed-dir", options.precomputed_dir),
                       ("--mer-factory-output", options.mer_factory_output), ("--captions", options.captions_file)):
        if path and not os.path.exists(os.path.expanduser(path)):
            log.warning("%s %s does not exist (yet); the config names it anyway", flag, path)


def au_dataset_keys(options: ConfigOptions, mode: str) -> Dict[str, object]:
    use_agent = bool(options.agent_dir or options.openface_dir or options.precomputed_dir
                     or not options.mer_factory_output)
    return {
        "face_or_frame": mode,
        "use_au_agent": use_agent,
        "au_agent_dir": _abs(options.agent_dir),
        **{key: SETTINGS[key] for key in SEED_AGENT_KEYS},
        "openface_output_dir": _abs(options.openface_dir),
        "mer_factory_output": _abs(options.mer_factory_output),
        "au_precomputed_dir": _abs(options.precomputed_dir),
    }


def _merge(section, keys: Dict[str, object]) -> None:
    """Set the keys, except that a null placeholder never replaces a value the base config already has."""
    for key, value in keys.items():
        if value is not None or section.get(key) is None:
            section[key] = value


def _header(title: str, base: str, extra: str = "", au_keys: bool = True) -> str:
    head = (f"# {title}\n"
            f"# Written by `au-agent patch-affectgpt` from {base}; removed by `au-agent patch-affectgpt --revert`.\n")
    if not au_keys:
        return head + extra + "\n"
    return (head + "#\n"
            "# AU keys (per dataset; inference also reads them from the inference section):\n"
            "#   use_au_agent         true: OpenFace CSV -> AU Agent -> CLIP (or a precomputed feature); false: the\n"
            "#                        descriptions MER-Factory already wrote (mer_factory_output)\n"
            "#   au_agent_dir         an `au-agent train` output folder (agent_card.json); or set\n"
            "#   au_agent_base_model  Qwen2.5-7B-Instruct folder, and au_agent_lora_weights (checkpoint-best)\n"
            "#   openface_output_dir  {video}.csv from OpenFace FeatureExtraction -aus\n"
            "#   au_precomputed_dir   {video}.npy/.json from `au-agent precompute` (read first when present)\n"
            "#   mer_factory_output   per-frame MER-Factory output ({video}/{video}_au_analysis.json)\n"
            f"#   au_clip_model        CLIP weights (default {SourceSettings.au_clip_model}; its width must be "
            f"model.au_feature_dim)\n"
            f"#   au_max_missing       largest fraction of samples without AU features (default "
            f"{SourceSettings.au_max_missing}; more is an error)\n"
            f"#   model.num_au_query_token / au_fusion_type ({'|'.join(branch_constants()['FUSION_TYPES'])}) / "
            f"frozen_au_proj: the AU branch\n"
            "#   model.au_feature_dim (the CLIP width) / au_init_seed (the AU branch's initial weights)\n"
            + extra + "\n")


def build_configs(code_root: Path, variant: str, options: ConfigOptions, known_modes: set,
                  builders: Dict[str, str]) -> "tuple[Path, Dict[str, str]]":
    """The base config used and ``{code-root-relative path: YAML text}`` of the two generated configs."""
    from omegaconf import OmegaConf

    base = choose_base(code_root, variant, options.base_config)
    cfg = _load(base)
    rel_base = os.path.relpath(base, code_root)
    unknown = [name for name in cfg.datasets if name not in builders]
    if unknown:
        raise AUAgentError(f"datasets {', '.join(unknown)} have no registered builder "
                           f"(registered: {', '.join(sorted(builders))})", base)
    mode = _mode(options, known_modes, variant, str(base))
    _warn_missing(options)
    if variant == NONVERBAL:
        return base, text_configs.nonverbal_configs(
            cfg, mode, options.captions_file, lambda title, extra: _header(title, rel_base, extra, au_keys=False))
    base_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    keys = au_dataset_keys(options, mode)
    for name in cfg.datasets:
        _merge(cfg.datasets[name], keys)
    constants = branch_constants()
    for key, default in constants["DEFAULTS"].items():
        if key not in cfg.model:
            cfg.model[key] = default
    if variant == "upstream" and cfg.model.au_fusion_type not in constants["FUSION_TYPES"]:
        raise AUAgentError(f"model.au_fusion_type {cfg.model.au_fusion_type!r}: the AU branch supports "
                           f"{', '.join(constants['FUSION_TYPES'])}", base)
    cfg.inference.face_or_frame = mode
    train_text = _header("AffectGPT training with AU features from the AU Agent.", rel_base) + OmegaConf.to_yaml(cfg)

    infer = OmegaConf.create(OmegaConf.to_container(cfg))
    _merge(infer.inference, {k: v for k, v in keys.items() if k != "face_or_frame"})
    infer.inference.ckpt_root = "xxx"
    extra = ("#\n# Set inference.ckpt_root to the training run's folder (output/config_with_au_agent/<job id>) or\n"
             "#   pass --options inference.ckpt_root=...; the AU keys under inference: are for the test datasets.\n"
             "#   python inference_hybird.py --cfg-path inference_config_au_agent.yaml")
    infer_text = _header("AffectGPT inference with AU features from the AU Agent.", rel_base, extra) \
        + OmegaConf.to_yaml(infer)
    generated = {TRAIN_CONFIG: train_text, INFERENCE_CONFIG: infer_text}
    if variant == UPSTREAM:
        generated.update(text_configs.upstream_text_configs(
            cfg, infer, base_cfg, keys, lambda title, extra: _header(title, rel_base, extra)))
    return base, generated
