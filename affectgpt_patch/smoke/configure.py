"""The configuration of a smoke run's temporary copy: the checkout's ``config.py`` pointed at the tiny stand-ins and
the tiny data root, the AU training config made to run a few steps here on that data, and the ``--set KEY=VALUE``
overrides applied on top (YAML-typed; a bare key goes to the model when the AU branch has it, else to every
dataset). :mod:`.runner` calls these on the copy only; the user's checkout is never written.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple

from au_core.errors import AUAgentError

if TYPE_CHECKING:  # the stand-ins are built when a smoke run starts, never imported with this module
    from au_standins.affectgpt_encoders import StandIns

    from .runner import SmokeOptions

_CONFIG_MARK = "# ---- au-agent smoke-affectgpt: stand-ins"


def parse_overrides(items: Sequence[str]) -> List[Tuple[str, Any]]:
    """``["model.au_fusion_type=mean", "num_au_query_token=3"]`` → ``[(key, value)]`` with YAML-typed values."""
    import yaml

    parsed = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AUAgentError(f"--set {item!r}: expected KEY=VALUE (e.g. model.au_fusion_type=mean)")
        try:
            parsed.append((key.strip(), yaml.safe_load(value) if value.strip() else None))
        except yaml.YAMLError as e:
            raise AUAgentError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    return parsed


def _model_keys() -> set:
    from ..branch_template import branch_constants

    return set(branch_constants()["DEFAULTS"])


def apply_overrides(cfg: Any, overrides: Sequence[Tuple[str, Any]]) -> List[str]:
    """Set each key: ``section.key`` as given; a bare key in ``model`` when the model has it (or it is an AU
    branch key), else in every dataset. Returns the dotted keys set."""
    from omegaconf import OmegaConf

    done = []
    for key, value in overrides:
        if key.split(".")[0] in ("model", "datasets", "run", "inference"):
            targets = [key]
        elif key in cfg.model or key in _model_keys():
            targets = [f"model.{key}"]
        else:
            targets = [f"datasets.{name}.{key}" for name in cfg.datasets]
        for target in targets:
            OmegaConf.update(cfg, target, value, force_add=True)
            done.append(f"{target}={value}")
    return done


def config_py_overrides(standins: StandIns, data_root: Path) -> str:
    """Python appended to the copy's ``config.py``: every model path at a stand-in, every dataset folder
    under the tiny data root (same folder names, so ``mer2025-dataset`` stays ``mer2025-dataset``)."""
    return f"""

{_CONFIG_MARK} (this temporary copy only) ----
def _au_agent_smoke_paths():
    import os as _os
    g = globals()
    for _name, _path in (("PATH_TO_LLM", {str(standins.llm)!r}), ("PATH_TO_VISUAL", {str(standins.visual)!r}),
                         ("PATH_TO_AUDIO", {str(standins.audio)!r})):
        if isinstance(g.get(_name), dict):
            g[_name] = {{_k: _path for _k in g[_name]}}
    old = g.get("DATA_DIR")
    if not isinstance(old, dict):
        return
    new = {{_k: _os.path.join({str(data_root)!r}, _os.path.basename(_os.path.normpath(_v)))
           for _k, _v in old.items()}}
    g["DATA_DIR"] = new
    for _name, _table in list(g.items()):
        if _name.startswith("PATH_TO_") and isinstance(_table, dict):
            g[_name] = {{_k: (new[_k] + _v[len(old[_k]):] if _k in old and isinstance(_v, str)
                              and _v.startswith(old[_k]) else _v) for _k, _v in _table.items()}}


_au_agent_smoke_paths()
"""


def point_config_at_standins(code_root: Path, standins: StandIns, data_root: Path) -> None:
    path = code_root / "config.py"
    text = path.read_text(encoding="utf-8")
    if _CONFIG_MARK not in text:
        path.write_text(text + config_py_overrides(standins, data_root), encoding="utf-8")


def smoke_config(base: Path, opts: SmokeOptions, features: Path, clip_path: Path,
                 overrides: Sequence[Tuple[str, Any]]) -> Tuple[Any, List[str]]:
    """The AU config made to run a few steps here on the tiny data, then the ``--set`` overrides."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(base)
    cpu = opts.device == "cpu"
    run = {"device": opts.device, "max_epoch": 1, "iters_per_epoch": opts.steps, "warmup_steps": 1,
           "num_workers": 0, "batch_size_train": opts.batch_size, "batch_size_eval": 1,
           "resume_ckpt_path": None, "evaluate": False}
    if cpu:
        run["amp"] = False
    for key, value in run.items():
        cfg.run[key] = value
    for key in ("ckpt", "ckpt_2", "ckpt_3"):  # start from the stand-ins, not from released weights
        if key in cfg.model:
            cfg.model[key] = ""
    cfg.model["au_feature_dim"] = opts.clip_width  # the width of the features precomputed with the tiny CLIP
    if cfg.model.get("skip_encoders"):  # the AU fork's pre-extracted mode: the tiny data is raw media
        cfg.model.skip_encoders = False
    au_keys = {"use_au_agent": True, "au_precomputed_dir": str(features), "openface_output_dir": None,
               "au_agent_dir": None, "au_agent_base_model": None, "au_agent_lora_weights": None,
               "mer_factory_output": None, "au_clip_model": str(clip_path)}
    au_keys["au_route"] = opts.au_route
    for name in cfg.datasets:
        for key, value in au_keys.items():
            cfg.datasets[name][key] = value
        if "use_preextracted_features" in cfg.datasets[name]:
            cfg.datasets[name].use_preextracted_features = False  # the tiny dataset has raw media only
    for key, value in au_keys.items():
        if key in cfg.inference or key == "au_precomputed_dir":
            cfg.inference[key] = value
    return cfg, apply_overrides(cfg, overrides)
