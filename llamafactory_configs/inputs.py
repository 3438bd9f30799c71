"""Check the inputs of a run before it starts: the dataset folder registers the recipe's splits, follows this
prompt contract and is not empty (a hand-edited dataset whose prompts differ would train an agent on prompts it
is never served); the base model is a model folder, or a hub id that can be fetched.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence

from au_core import contract
from au_core.atomic import file_digest
from au_core.errors import AUAgentError

log = logging.getLogger(__name__)

#: Records of each split checked against the prompt contract before a run starts (evenly spaced).
CONTRACT_SAMPLE = 1000
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _names(value: Any) -> List[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _read_records(path: Path) -> List[Any]:
    """Records of a JSON list or JSON-lines file (the two file formats LLaMA-Factory reads)."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [r for r in (json.loads(line) for line in text.splitlines() if line.strip()) if r is not None]
        records = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AUAgentError(f"not valid JSON ({e})", path) from None
    if not isinstance(records, list):
        raise AUAgentError(f"a JSON {type(records).__name__}, not a list of records", path)
    return records


def check_records(records: Sequence[Any], path: Path) -> None:
    """A sample of records follows the prompt contract: a hand-edited dataset whose system prompt, instruction
    or inputs differ would train an agent on prompts it is never served."""
    step = max(1, len(records) // CONTRACT_SAMPLE)
    for i in range(0, len(records), step):
        rec = records[i]
        where = f"record {i}"
        if not isinstance(rec, dict):
            raise AUAgentError(f"{where} is not a JSON object", path)
        if rec.get("instruction") != contract.INSTRUCTION:
            raise AUAgentError(f"{where}: the instruction differs from the prompt contract's INSTRUCTION "
                               "(au_core/contract.py); re-run au-agent prepare-data", path)
        if "system" in rec and rec["system"] != contract.SYSTEM_PROMPT:
            raise AUAgentError(f"{where}: the system prompt differs from the prompt contract's SYSTEM_PROMPT; "
                               "re-run au-agent prepare-data", path)
        if not isinstance(rec.get("output"), str) or not rec["output"].strip():
            raise AUAgentError(f"{where} has no 'output' text", path)
        text = rec.get("input")
        try:
            canonical = contract.format_input(contract.parse_input(text)) if isinstance(text, str) else None
        except (AUAgentError, ValueError):
            canonical = None
        if canonical != text or contract.is_neutral(text):
            raise AUAgentError(f"{where}: input {str(text)[:60]!r} is not a contract input string (e.g. "
                               "'AU04: 1.20, AU07: 0.95', active AUs only, ascending); re-run au-agent prepare-data",
                               path)


def check_dataset(recipe: Dict[str, Any]) -> Dict[str, Any]:
    """The dataset folder registers the recipe's splits, follows this prompt contract, and is not empty.

    Returns what the agent card records about it: folder, splits, per-file sha1 and size, and one overall sha1.
    """
    root = Path(recipe["dataset_dir"])
    if not root.is_dir():
        raise AUAgentError("dataset folder not found (run au-agent prepare-data first)", root)
    info_path = root / "dataset_info.json"
    if not info_path.is_file():
        raise AUAgentError("no dataset_info.json: not a dataset written by au-agent prepare-data", root)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AUAgentError(f"not valid JSON ({e})", info_path) from None
    check_contract_file(root)

    train, evals = _names(recipe.get("dataset")), _names(recipe.get("eval_dataset"))
    if not train:
        raise AUAgentError("the recipe names no training split (dataset)")
    evaluates = recipe.get("eval_strategy", "no") != "no" or recipe.get("load_best_model_at_end")
    if evaluates and not evals:
        raise AUAgentError("the recipe evaluates but names no validation split (eval_dataset)")
    files: Dict[str, Dict[str, Any]] = {}
    for name in train + evals:
        if name not in info:
            raise AUAgentError(f"dataset_info.json registers no split {name!r} (it has: {', '.join(info) or 'none'})",
                               info_path)
        file_name = info[name].get("file_name") if isinstance(info[name], dict) else None
        path = root / str(file_name)
        if not file_name or not path.is_file():
            raise AUAgentError(f"split {name!r}: data file {file_name!r} not found", root)
        loaded = _read_records(path)
        check_records(loaded, path)
        records = len(loaded)
        if not records:
            hint = (" (re-run prepare-data with --val-ratio > 0, or pass eval_strategy=no "
                    "load_best_model_at_end=false)" if name in evals else "")
            raise AUAgentError(f"split {name!r} is empty{hint}", path)
        sha1 = file_digest(path, "sha1")
        if info[name].get("file_sha1") not in (None, sha1):
            log.warning("%s changed after prepare-data wrote it (sha1 differs from dataset_info.json)", path)
        files[name] = {"file": file_name, "sha1": sha1, "records": records}
    overall = hashlib.sha1("".join(f"{n}:{f['sha1']}\n" for n, f in sorted(files.items())).encode()).hexdigest()
    return {"dir": str(root), "train": train, "eval": evals, "files": files, "sha1": overall}


def check_contract_file(dataset_dir: Path) -> None:
    path = dataset_dir / "contract.json"
    if not path.is_file():
        raise AUAgentError("no contract.json: the dataset predates the prompt contract; re-run au-agent prepare-data",
                           dataset_dir)
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        version = written.get("contract_version")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise AUAgentError(f"not a readable contract ({e})", path) from None
    if version != contract.CONTRACT_VERSION:
        raise AUAgentError(f"the dataset follows prompt contract {version!r}, this au-agent trains "
                           f"{contract.CONTRACT_VERSION!r}; re-run au-agent prepare-data", path)
    changed = [key for key, value in contract.describe().items() if written.get(key) != value]
    if changed:
        raise AUAgentError(f"{', '.join(changed)} differ from prompt contract {version} (au_core/contract.py): "
                           "the file was edited; re-run au-agent prepare-data", path)


def check_base_model(value: str) -> None:
    """A local model folder, or a hub id that can be fetched (or is cached, when offline)."""
    path = Path(value)
    if path.exists():
        if not (path / "config.json").is_file():
            raise AUAgentError("not a model folder (no config.json)", path)
        if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            raise AUAgentError("the model folder has no tokenizer files", path)
        return
    if path.is_absolute() or value.startswith((".", "~")) or not _HUB_ID_RE.match(value):
        raise AUAgentError("base model folder not found (nor is it a hub id like Qwen/Qwen2.5-7B-Instruct)", value)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline and os.environ.get("USE_MODELSCOPE_HUB", "").lower() not in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(value, "config.json"), str):
            raise AUAgentError(f"HF_HUB_OFFLINE is set and {value} is not in the Hugging Face cache; download it "
                               f"first (huggingface-cli download {value}) or pass its folder")
