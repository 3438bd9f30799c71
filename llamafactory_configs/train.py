"""``au-agent train``: train the AU Agent with a LLaMA-Factory recipe, and hand off its best checkpoint.

    recipe (YAML in this folder, or a file) + --dataset/--base-model/--out + key=value overrides
        → validated before launch (each problem is one AUAgentError line; nothing is written)
        → OUT/au_agent_recipe.yaml, run by ``llamafactory-cli train`` (output streamed and kept in OUT/train.log)
        → OUT/checkpoint-best/ (the adapter with the lowest eval loss) and OUT/agent_card.json

An OUT that holds checkpoints is resumed from the last one; one that holds anything else is refused unless
``--overwrite`` is given, which deletes the previous run first. Training a day on the wrong split, with a base
model that is not there or into a folder that held last week's agent are the mistakes this module exists to stop.

Multi-GPU and multi-node runs go through LLaMA-Factory's torchrun launcher (``FORCE_TORCHRUN=1`` with
``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment). Every node
validates its inputs, but only node 0 plans the output folder (resume, start over, delete with ``--overwrite``),
writes the resolved recipe and then a ready marker; the other nodes wait for that marker and train with node
0's recipe, so none plans against a folder that node 0 is deleting. Node 0 logs to ``train.log``, node N to
``train.node{N}.log``. Only node 0 writes ``checkpoint-best/`` and the card.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from data_prep import atomic, contract
from data_prep.errors import AUAgentError

from .agent_card import BEST_DIR, CARD_NAME, FINETUNING_TYPES, build_agent_card, write_agent_card

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_RECIPE = "qwen2.5_7b_lora_sft"
RECIPE_FILE = "au_agent_recipe.yaml"  # the resolved recipe, in the output folder
LOG_FILE = "train.log"
READY_FILE = ".au_agent_train_ready.json"  # written by node 0 once the output folder is planned
_NODE_LOG_RE = re.compile(r"train\.node\d+\.log")
NODE_WAIT_ENV = "AU_AGENT_NODE_WAIT_S"  # how long other nodes wait for node 0 (default one hour)

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
#: What a run leaves before its first checkpoint: such a folder starts over without --overwrite.
RESTARTABLE = {RECIPE_FILE, LOG_FILE, "trainer_log.jsonl", READY_FILE}
#: Signs that a folder holds a training run, which --overwrite may delete.
RUN_MARKERS = {RECIPE_FILE, LOG_FILE, "trainer_state.json", "trainer_log.jsonl", "adapter_config.json", CARD_NAME}
#: Checkpoint files that only resuming needs; checkpoint-best leaves them out.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "training_args.bin",
               "global_step*", "latest", "zero_to_fp32.py")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class TrainOptions:
    dataset: Path
    out: Path
    recipe: str = DEFAULT_RECIPE
    base_model: Optional[str] = None  # default: the recipe's model_name_or_path
    overwrite: bool = False
    overrides: Sequence[str] = ()  # OmegaConf dotlist, e.g. ["num_train_epochs=5"]
    echo: bool = True  # copy LLaMA-Factory's output to stdout (it always goes to OUT/train.log)


# -------------------------------------------------------------------------------------------- recipes


def recipe_names() -> List[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


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


def render_recipe(opts: TrainOptions) -> Tuple[Dict[str, Any], Path]:
    """The recipe with the user's paths (absolute) and overrides applied, and the file it came from."""
    path = find_recipe(opts.recipe)
    recipe = {**load_recipe(path), **parse_overrides(opts.overrides)}
    base_model = opts.base_model or recipe.get("model_name_or_path")
    if not base_model:
        raise AUAgentError("no base model: pass --base-model DIR|HUB_ID", path)
    local = Path(str(base_model)).expanduser()
    recipe["model_name_or_path"] = str(local.resolve()) if local.exists() else str(base_model)
    recipe["dataset_dir"] = str(Path(opts.dataset).expanduser().resolve())
    recipe["output_dir"] = str(Path(opts.out).expanduser().resolve())
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


# ----------------------------------------------------------------------------------------- validation


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
                           "(data_prep/contract.py): the agent would be served a prompt it was not trained on", path)
    if recipe.get("val_size") and recipe.get("eval_dataset"):
        raise AUAgentError("val_size and eval_dataset exclude each other; the dataset has its own validation split",
                           path)


def _names(value: Any) -> List[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


#: Records of each split checked against the prompt contract before a run starts (evenly spaced).
CONTRACT_SAMPLE = 1000


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
                               "(data_prep/contract.py); re-run au-agent prepare-data", path)
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
        sha1 = _sha1(path)
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
        raise AUAgentError(f"{', '.join(changed)} differ from prompt contract {version} (data_prep/contract.py): "
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


def _checkpoints(out: Path) -> List[Path]:
    """Complete ``checkpoint-N`` folders (with trainer state), by step."""
    found = []
    for p in out.iterdir() if out.is_dir() else ():
        m = _CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def plan_output(recipe: Dict[str, Any], overwrite: bool) -> Tuple[str, Optional[Path]]:
    """Decide what happens to the output folder: ``("fresh", None)``, ``("resume", checkpoint)`` or
    ``("overwrite", None)``; refuse what would silently destroy or mix runs."""
    out = Path(recipe["output_dir"])
    if any(ch.isspace() for ch in str(out)):
        raise AUAgentError("the output path contains whitespace, which LLaMA-Factory's torchrun launcher splits "
                           "into separate arguments; choose another --out", out)
    protected = {"dataset": Path(recipe["dataset_dir"]), "base model": Path(recipe["model_name_or_path"])}
    for what, path in protected.items():
        if path.exists() and (out == path or out in path.parents):
            raise AUAgentError(f"--out must not be or contain the {what} folder", out)
    if out.exists() and not out.is_dir():
        raise AUAgentError("exists and is not a folder", out)
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    checkpoints = _checkpoints(out)
    if overwrite:
        if entries and not (entries & RUN_MARKERS or checkpoints or any(map(_NODE_LOG_RE.fullmatch, entries))):
            raise AUAgentError("refusing to --overwrite a folder that does not hold a training run "
                               f"(no {RECIPE_FILE}, trainer_state.json or checkpoints)", out)
        return ("overwrite" if entries else "fresh"), None
    if checkpoints:
        return "resume", checkpoints[-1]
    if {e for e in entries if not _NODE_LOG_RE.fullmatch(e)} <= RESTARTABLE:
        return "fresh", None
    raise AUAgentError("not empty and holds no checkpoint to resume from; pass --overwrite to start over "
                       "or choose another --out", out)


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


def node_rank() -> int:
    """This node's rank: ``NODE_RANK`` (torchrun's multi-node launcher), else ``RANK``, else 0."""
    for var in ("NODE_RANK", "RANK"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise AUAgentError(f"{var}={value!r} is not a node rank (an integer)") from None
    return 0


def _is_main_node() -> bool:
    return node_rank() == 0


def node_log_file(out: Path, rank: int) -> Path:
    """One log per node: several nodes appending to one file on a shared folder interleave their lines."""
    return out / (LOG_FILE if rank == 0 else f"train.node{rank}.log")


def wait_for_main_node(out: Path, since: float, timeout: Optional[float] = None, poll: float = 2.0) -> None:
    """Block until node 0 has planned ``out`` for this run (its ready marker, written after ``since``)."""
    timeout = float(os.environ.get(NODE_WAIT_ENV, 3600)) if timeout is None else timeout
    ready = out / READY_FILE
    deadline = time.time() + timeout
    log.info("node %d: waiting for node 0 to prepare %s", node_rank(), out)
    while True:
        try:
            if json.loads(ready.read_text(encoding="utf-8")).get("time", 0) >= since - 60:  # 60 s clock skew
                return
        except (OSError, ValueError, AttributeError):
            pass
        if time.time() > deadline:
            raise AUAgentError(f"node 0 did not prepare the output folder within {timeout:.0f} s (no {READY_FILE}); "
                               f"start node 0 too, or raise {NODE_WAIT_ENV}", out)
        time.sleep(poll)


# --------------------------------------------------------------------------------------------- launch


def run_llamafactory(command: str, recipe_file: Path, log_file: Path, echo: bool = True,
                     env: Optional[Dict[str, str]] = None) -> None:
    """Run ``llamafactory-cli COMMAND RECIPE`` with this interpreter, copying its output to ``log_file`` (and
    stdout) as it comes; raise with its last line when it fails."""
    env = dict(os.environ if env is None else env)
    # torchrun (multi-GPU) is looked up on PATH: make it this environment's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", "llamafactory.cli", command, str(recipe_file)]
    log.info("running llamafactory-cli %s %s (log: %s)", command, recipe_file, log_file)
    sink = getattr(sys.stdout, "buffer", None)
    tail = b""
    with open(log_file, "ab") as log_f:
        log_f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} llamafactory-cli {command} {recipe_file}\n".encode())
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, bufsize=0) as proc:
            for chunk in iter(lambda: proc.stdout.read(1 << 16), b""):
                log_f.write(chunk)
                tail = (tail + chunk)[-4096:]
                if echo and sink is not None:
                    sink.write(chunk)
                    sink.flush()
                elif echo:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
    if proc.returncode != 0:
        lines = [line.strip() for line in tail.decode("utf-8", "replace").replace("\r", "\n").splitlines()]
        last = next((line for line in reversed(lines) if line), "no output")
        raise AUAgentError(f"llamafactory-cli {command} failed (exit status {proc.returncode}): {last}; "
                           f"full log: {log_file}")


# ------------------------------------------------------------------------------------------ hand-off


def select_best_checkpoint(out: Path, state: Dict[str, Any]) -> Tuple[Path, Optional[int], Optional[float]]:
    """The checkpoint with the lowest eval loss: the trainer's ``best_model_checkpoint`` when it is still there
    (looked up by name, so a moved folder works), else the lowest logged eval loss among saved checkpoints, else
    the final adapter in ``out`` (a run without evaluation)."""
    losses: Dict[int, float] = {}
    for entry in state.get("log_history", []):
        if "eval_loss" in entry:
            losses.setdefault(int(entry["step"]), float(entry["eval_loss"]))  # the periodic eval, not a re-run
    saved = {int(_CHECKPOINT_RE.match(p.name).group(1)): p for p in _checkpoints(out)}
    recorded = state.get("best_model_checkpoint")
    if recorded and (out / Path(recorded).name).is_dir():
        best = out / Path(recorded).name
    elif any(step in saved for step in losses):
        best = saved[min((loss, step) for step, loss in losses.items() if step in saved)[1]]
    else:
        log.warning("no evaluated checkpoint in %s: checkpoint-best holds the final adapter", out)
        return out, state.get("global_step"), None
    step = int(_CHECKPOINT_RE.match(best.name).group(1))
    return best, step, losses.get(step)


def export_best(source: Path, out: Path) -> Path:
    """Copy the adapter and tokenizer of ``source`` (without optimizer state) to ``out/checkpoint-best``."""
    skip = shutil.ignore_patterns(*RESUME_ONLY, "checkpoint-*", RECIPE_FILE, LOG_FILE, "train.node*.log", CARD_NAME,
                                  "trainer_log.jsonl",
                                  "*.png", "*_results.json", "runs", ".*")
    with atomic.staged_dir(out / BEST_DIR) as stage:
        shutil.copytree(source, stage, ignore=skip, dirs_exist_ok=True)
    return out / BEST_DIR


def finish_run(out: Path, recipe: Dict[str, Any], recipe_name: str, dataset: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``checkpoint-best/`` and the agent card of a finished run; return the card."""
    state_path = out / "trainer_state.json"
    if not state_path.is_file():
        raise AUAgentError("training ended without trainer_state.json; see train.log", out)
    state = json.loads(state_path.read_text(encoding="utf-8"))
    source, step, loss = select_best_checkpoint(out, state)
    export_best(source, out)
    best = {"source": source.name if source != out else ".", "step": step, "eval_loss": loss}
    card = build_agent_card(recipe, recipe_name, out, best, dataset, state)
    write_agent_card(card, out)
    log.info("best checkpoint: %s (step %s, eval_loss %s) → %s", best["source"], step,
             f"{loss:.4f}" if loss is not None else "n/a", out / BEST_DIR)
    return card


# ------------------------------------------------------------------------------------------------ run


def prepare_run(opts: TrainOptions) -> Tuple[Dict[str, Any], Path, Dict[str, Any], str, Optional[Path]]:
    """Render and validate everything; nothing is written. Returns the recipe, its source file, the dataset
    summary, and the output plan (``fresh`` / ``resume`` / ``overwrite``) with the checkpoint to resume."""
    recipe, source = render_recipe(opts)
    check_recipe(recipe, source)
    dataset = check_dataset(recipe)
    check_base_model(recipe["model_name_or_path"])
    action, checkpoint = plan_output(recipe, opts.overwrite)
    check_packages(recipe)
    check_precision(recipe)
    return recipe, source, dataset, action, checkpoint


def train_agent(opts: TrainOptions) -> Optional[Dict[str, Any]]:
    """Validate, launch ``llamafactory-cli train``, and hand off the best checkpoint. Returns the agent card
    (``None`` on nodes other than node 0, which leave the hand-off to node 0)."""
    from omegaconf import OmegaConf

    started = time.time()
    if not _is_main_node():
        return _train_other_node(opts, started)
    recipe, source, dataset, action, checkpoint = prepare_run(opts)
    out = Path(recipe["output_dir"])
    with contextlib.suppress(FileNotFoundError):
        (out / READY_FILE).unlink()  # a crashed run's marker must not release the other nodes early
    recipe["overwrite_output_dir"] = action == "overwrite"
    if action == "resume" and "resume_from_checkpoint" not in recipe:
        recipe["resume_from_checkpoint"] = str(checkpoint)
        _warn_changed_recipe(out / RECIPE_FILE, recipe)
        log.info("resuming from %s (--overwrite starts over)", checkpoint)
    elif action == "overwrite":
        log.info("--overwrite: deleting the previous run in %s", out)
        shutil.rmtree(out)
    elif action == "fresh" and (out / "trainer_log.jsonl").is_file():
        (out / "trainer_log.jsonl").unlink()  # steps of a run that saved no checkpoint
    env = dict(os.environ)
    if recipe.get("deepspeed"):
        env.setdefault("FORCE_TORCHRUN", "1")  # LLaMA-Factory runs DeepSpeed only under torchrun
    if recipe.get("ray_num_workers"):
        env.setdefault("USE_RAY", "1")  # LLaMA-Factory's Ray Train path reads the switch from the environment
    out.mkdir(parents=True, exist_ok=True)
    recipe_file = out / RECIPE_FILE
    text = OmegaConf.to_yaml(OmegaConf.create(recipe))
    atomic.write_text(recipe_file, text)
    log.info("recipe %s resolved to %s:\n%s", source.name, recipe_file, text)
    atomic.write_json(out / READY_FILE, {"time": time.time(), "action": action})
    try:
        run_llamafactory("train", recipe_file, node_log_file(out, 0), opts.echo, env)
    finally:
        with contextlib.suppress(FileNotFoundError):
            (out / READY_FILE).unlink()
    return finish_run(out, recipe, source.stem, dataset)


def _train_other_node(opts: TrainOptions, started: float) -> None:
    """A node other than 0: check the inputs, wait for node 0's plan, train with node 0's recipe."""
    recipe, source = render_recipe(opts)
    check_recipe(recipe, source)
    check_dataset(recipe)
    check_base_model(recipe["model_name_or_path"])
    out = Path(recipe["output_dir"])
    wait_for_main_node(out, started)
    env = dict(os.environ)
    if recipe.get("deepspeed"):
        env.setdefault("FORCE_TORCHRUN", "1")
    rank = node_rank()
    run_llamafactory("train", out / RECIPE_FILE, node_log_file(out, rank), opts.echo, env)
    log.info("node %d: done; node 0 writes %s and %s", rank, BEST_DIR, CARD_NAME)
    return None



def _warn_changed_recipe(previous_file: Path, recipe: Dict[str, Any]) -> None:
    if not previous_file.is_file():
        return
    previous = load_recipe(previous_file)
    ignore = {"resume_from_checkpoint", "overwrite_output_dir"}
    changed = sorted(k for k in set(previous) | set(recipe) if k not in ignore and previous.get(k) != recipe.get(k))
    if changed:
        log.warning("resuming with a changed recipe: %s", ", ".join(
            f"{k}: {previous.get(k)!r} → {recipe.get(k)!r}" for k in changed))
