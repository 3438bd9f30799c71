"""Render and check a training recipe: a YAML of LLaMA-Factory keys, with the user's paths and overrides applied.

Each problem is one :class:`~au_core.errors.AUAgentError` line before anything is launched or written: a recipe
that is not SFT under the prompt contract, a key LLaMA-Factory 0.9.5 no longer reads, a base model that is not
there (inputs.py), a package the recipe needs, a precision this machine lacks.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from au_core import contract
from au_core.agent_card import FINETUNING_TYPES
from au_core.errors import AUAgentError

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_RECIPE = "qwen2.5_7b_lora_sft"

#: Recipe keys the command line owns: overriding them as key=value would leave two answers.
PATH_KEYS = {"model_name_or_path": "--base-model", "dataset_dir": "--dataset", "output_dir": "--out"}
#: Keys that LLaMA-Factory 0.9.5 / transformers 5 no longer take or that do the wrong thing, and what to use.
RENAMED_KEYS = {
    "evaluation_strategy": "eval_strategy",
    "gradient_checkpointing": "nothing (LLaMA-Factory enables gradient checkpointing itself; "
                              "disable_gradient_checkpointing=true turns it off)",
    "load_in_8bit": "quantization_bit=8",
    "load_in_4bit": "quantization_bit=4",
}


def recipe_names() -> List[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def training_recipe_names() -> List[str]:
    """The bundled recipes ``au-agent train`` runs (``do_train: true``); predict, merge and api recipes run with
    llamafactory-cli directly. Read as text: the CLI lists them in its help without loading YAML."""
    return [name for name in recipe_names()
            if re.search(r"^do_train:\s*true\b", (RECIPE_DIR / f"{name}.yaml").read_text(encoding="utf-8"), re.M)]


def find_recipe(name_or_file: str) -> Path:
    """A recipe by name (``qwen2.5_7b_lora_sft``, with or without ``.yaml``) or by path."""
    path = Path(name_or_file).expanduser()
    if path.is_file():
        return path
    bundled = RECIPE_DIR / (name_or_file if name_or_file.endswith(".yaml") else f"{name_or_file}.yaml")
    if bundled.is_file():
        return bundled
    raise AUAgentError(f"no recipe {name_or_file!r}: give a YAML file or one of {', '.join(recipe_names())}")


def load_recipe(path: Path) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        recipe = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # noqa: BLE001 - YAML and OmegaConf raise many types
        raise AUAgentError(f"not a readable recipe ({str(e).splitlines()[0]})", path) from None
    if not isinstance(recipe, dict):
        raise AUAgentError("a recipe is a YAML mapping of LLaMA-Factory keys", path)
    return recipe


def parse_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """``["num_train_epochs=5", "lora_target=q_proj,v_proj"]`` → typed values, as ``llamafactory-cli`` reads them."""
    from omegaconf import OmegaConf

    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise AUAgentError(f"override {item!r} is not key=value")
    try:
        values = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=True)
    except Exception as e:  # noqa: BLE001
        raise AUAgentError(f"cannot read the overrides ({str(e).splitlines()[0]})") from None
    for key in values:
        if key in PATH_KEYS:
            raise AUAgentError(f"set {key} with {PATH_KEYS[key]}, not as an override")
    return values


def render_recipe(recipe_name: str, dataset: os.PathLike, out: os.PathLike, base_model: "str | None" = None,
                  overrides: Sequence[str] = ()) -> Tuple[Dict[str, Any], Path]:
    """The recipe with the user's paths (absolute) and overrides applied, and the file it came from."""
    path = find_recipe(recipe_name)
    recipe = {**load_recipe(path), **parse_overrides(overrides)}
    base_model = base_model or recipe.get("model_name_or_path")
    if not base_model:
        raise AUAgentError("no base model: pass --base-model DIR|HUB_ID", path)
    local = Path(str(base_model)).expanduser()
    recipe["model_name_or_path"] = str(local.resolve()) if local.exists() else str(base_model)
    recipe["dataset_dir"] = str(Path(dataset).expanduser().resolve())
    recipe["output_dir"] = str(Path(out).expanduser().resolve())
    if recipe.get("deepspeed"):
        recipe["deepspeed"] = str(find_deepspeed_config(str(recipe["deepspeed"]), path))
    return recipe, path


def find_deepspeed_config(value: str, recipe_path: Path) -> Path:
    """Recipes name their DeepSpeed JSON from the repository root; find it from anywhere (or installed)."""
    given = Path(value).expanduser()
    bundled = RECIPE_DIR / "deepspeed" / given.name
    for candidate in (given, recipe_path.parent / given, RECIPE_DIR.parent / given, bundled):
        if candidate.is_file():
            return candidate.resolve()
    raise AUAgentError("DeepSpeed config not found", value)


def check_recipe(recipe: Dict[str, Any], path: Path) -> None:
    """What makes a recipe an AU Agent training recipe: SFT under the prompt contract, LoRA (or full fine-tuning,
    which the demo's small random model needs: LoRA has nothing to adapt there)."""
    kind = (recipe.get("stage"), recipe.get("do_train"), recipe.get("finetuning_type"))
    if kind[:2] != ("sft", True) or kind[2] not in FINETUNING_TYPES:
        raise AUAgentError(f"not a LoRA or full SFT training recipe (stage={kind[0]}, do_train={kind[1]}, "
                           f"finetuning_type={kind[2]}); predict, merge and api recipes run with llamafactory-cli "
                           "directly", path)
    for key, instead in RENAMED_KEYS.items():
        if key in recipe:
            raise AUAgentError(f"the key {key!r} is not used by LLaMA-Factory 0.9.5; use {instead}", path)
    if recipe.get("template") != contract.TEMPLATE:
        raise AUAgentError(f"template is {recipe.get('template')!r}; the prompt contract is rendered with "
                           f"{contract.TEMPLATE!r}", path)
    if recipe.get("default_system") != contract.SYSTEM_PROMPT:
        raise AUAgentError("default_system differs from the prompt contract's SYSTEM_PROMPT "
                           "(au_core/contract.py): the agent would be served a prompt it was not trained on", path)
    if recipe.get("val_size") and recipe.get("eval_dataset"):
        raise AUAgentError("val_size and eval_dataset exclude each other; the dataset has its own validation split",
                           path)


def check_packages(recipe: Dict[str, Any]) -> None:
    if recipe.get("quantization_bit") and importlib.util.find_spec("bitsandbytes") is None:
        raise AUAgentError(f"quantization_bit={recipe['quantization_bit']} needs bitsandbytes (pip install "
                           "bitsandbytes) and a CUDA GPU")
    if recipe.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise AUAgentError("the recipe uses DeepSpeed, which is not installed (pip install deepspeed)")
    if recipe.get("ray_num_workers") and importlib.util.find_spec("ray") is None:
        raise AUAgentError("the recipe trains on Ray (ray_num_workers), which is not installed "
                           "(pip install 'au-agent[ray]')")


def check_precision(recipe: Dict[str, Any]) -> None:
    """bf16 needs an Ampere-or-newer GPU (older ones only emulate it), fp16 a CUDA GPU."""
    wants_bf16 = [k for k in ("bf16", "pure_bf16") if recipe.get(k)]
    if not wants_bf16 and not recipe.get("fp16"):
        return
    import torch

    cuda = torch.cuda.is_available()
    if wants_bf16 and not (cuda and torch.cuda.get_device_capability(0) >= (8, 0)):
        machine = f"{torch.cuda.get_device_name(0)} has no native bfloat16" if cuda else "this machine has no CUDA GPU"
        raise AUAgentError(f"{wants_bf16[0]}=true but {machine}; pass bf16=false "
                           "(and fp16=true on an older GPU, or nothing on CPU)")
    if recipe.get("fp16") and not cuda:
        raise AUAgentError("fp16=true but this machine has no CUDA GPU; pass fp16=false")
