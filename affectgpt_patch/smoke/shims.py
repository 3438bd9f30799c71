"""Run-time adjustments that let AffectGPT's own ``train.py`` and ``Chat`` run on a CPU, and the probes that
record what the smoke table reports. Both are applied by :mod:`.launch` inside the AffectGPT process of the
temporary copy only: no file of any checkout is edited.

CPU shims (what stops an unmodified AffectGPT on a machine without CUDA):

* ``RunnerBase.model`` returns ``_wrapped_model``, which is set only when ``.to(device)`` moved the model, so
  on CPU (where nothing moves) it is ``None``: fall back to the unwrapped model;
* ``PrefetchLoader`` always creates a ``torch.cuda.Stream()``: on CPU iterate the DataLoader directly;
* the LLM is loaded in float16 while CPU has no autocast: cast the built model to float32;
* ``base_task.py`` / ``runner_base.py`` accept only torch versions starting with ``2.4.0`` or ``2.1.0``: under
  another version those two modules see a torch whose ``__version__`` reads ``2.4.0`` (nothing else changes).

Probes: the AU parameters (any module path component starting with ``au_``; ``audio_*`` does not), their
gradients, the loss of every step, the AU features of every batch, and whether the embeddings at the
``<AUHere>`` positions are exactly the AU branch's output.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Dict, Iterable, List, Optional

log = logging.getLogger(__name__)

SUPPORTED_TORCH = ("2.4.0", "2.1.0")  # the versions AffectGPT's task and runner accept
#: What the launcher writes for the smoke table (in its --out folder).
TRAIN_REPORT, INFER_REPORT = "train.json", "infer.json"
AU_INITIAL, AU_FINAL, AU_INFERENCE = "au_initial.pt", "au_final.pt", "au_inference.pt"


# ------------------------------------------------------------------------------------------------ shims


def patch_runner_model(runner_cls: Any) -> None:
    """``RunnerBase.model``: the unwrapped model when no DDP wrapper was made (a CPU run)."""
    original = runner_cls.model

    def model(self):
        wrapped = original.fget(self)
        if wrapped is None:
            self._wrapped_model = self._model
            wrapped = self._model
        return wrapped

    runner_cls.model = property(model, doc=original.__doc__)


class CPUPrefetchLoader:
    """``PrefetchLoader`` without CUDA streams: yields the DataLoader's batches as they are."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["loader"], name)


def patch_prefetch_loader(*modules: Any) -> List[str]:
    """Replace ``PrefetchLoader`` in every module that holds the name (it is imported by name)."""
    done = []
    for module in modules:
        if module is not None and hasattr(module, "PrefetchLoader"):
            module.PrefetchLoader = CPUPrefetchLoader
            done.append(module.__name__)
    return done


class TorchWithVersion:
    """``torch`` as one module sees it, with another ``__version__``."""

    def __init__(self, torch: Any, version: str) -> None:
        self.__dict__["_torch"], self.__dict__["__version__"] = torch, version

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_torch"], name)


def patch_torch_version(*modules: Any, version: str = SUPPORTED_TORCH[0]) -> List[str]:
    """Give the modules' ``torch`` a supported version string when the installed one is not; returns the
    modules changed (none under torch 2.4.0 / 2.1.0)."""
    done = []
    for module in modules:
        torch = getattr(module, "torch", None)
        if torch is None or str(torch.__version__).startswith(SUPPORTED_TORCH):
            continue
        module.torch = TorchWithVersion(torch, version)
        done.append(module.__name__)
    return done


FUNCTIONAL_TENSOR = "torchvision.transforms.functional_tensor"


def alias_functional_tensor() -> None:
    """pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``, which torchvision 0.17 removed;
    AffectGPT's pinned torchvision is 0.19. Upstream AffectGPT aliases it to ``functional`` in
    ``ImageBind/data.py``; checkouts without that line need it done for them."""
    import sys

    import torchvision.transforms.functional as functional

    sys.modules.setdefault(FUNCTIONAL_TENSOR, functional)


def patch_build_model(task_cls: Any, after_build) -> None:
    """``task.build_model(cfg)`` → ``after_build(model, cfg)`` (which may return a replacement)."""
    original = task_cls.build_model

    def build_model(self, cfg):
        model = original(self, cfg)
        result = after_build(model, cfg)
        return model if result is None else result

    task_cls.build_model = build_model


# ----------------------------------------------------------------------------------------------- probes


def is_au_name(name: str) -> bool:
    """``au_branch.au_llama_proj.weight`` / ``au_llama_proj.weight`` → True; ``audio_llama_proj.weight`` → False."""
    return any(part.startswith("au_") for part in name.split("."))


def au_parameters(model: Any) -> Dict[str, Any]:
    return {name: p for name, p in model.named_parameters() if is_au_name(name)}


def au_state(model: Any) -> Dict[str, Any]:
    """Detached CPU float32 copies of the AU parameters."""
    return {name: p.detach().float().cpu().clone() for name, p in au_parameters(model).items()}


def tokens_of(result: Any) -> Any:
    """``encode_au_merge`` returns ``(hiddens, llm_tokens)`` in both AU codebases; the tokens are last."""
    return result[-1] if isinstance(result, (tuple, list)) else result


def splice_record(input_ids: Any, inputs_embeds: Any, tokens: Any, token_id: int, expected: int) -> Dict[str, Any]:
    """Per sample: how many ``<AUHere>`` ids the prompt had and whether the LLM's input embeddings at those
    positions are exactly the AU branch's tokens."""
    import torch

    counts, exact = [], []
    for b in range(input_ids.shape[0]):
        positions = torch.where(input_ids[b] == token_id)[0]
        counts.append(int(len(positions)))
        if tokens is None or len(positions) != tokens.shape[1] or inputs_embeds is None:
            exact.append(False)
            continue
        got = inputs_embeds[b, positions].detach().float()
        want = tokens[b].detach().float().to(got.device)
        exact.append(bool(torch.equal(got, want)))
    return {"counts": counts, "expected": int(expected), "exact": exact}


class Recorder:
    """What one AffectGPT process observed, written to a JSON file for the smoke table."""

    def __init__(self) -> None:
        self.data: Dict[str, Any] = {"losses": [], "grad_norms": {}, "trainable": [], "frozen": [],
                                     "batches": [], "splices": [], "shims": [], "dtype": None, "error": None,
                                     "texts": []}
        self._tokenizer: Any = None
        self._input_ids = None
        self._tokens = None
        self._token_id: Optional[int] = None
        self._expected: Optional[int] = None

    def note_shims(self, names: Iterable[str]) -> None:
        self.data["shims"] += list(names)

    # ---- attaching to a model

    def attach(self, model: Any) -> None:
        params = au_parameters(model)
        self.data["trainable"] = sorted(n for n, p in params.items() if p.requires_grad)
        self.data["frozen"] = sorted(n for n, p in params.items() if not p.requires_grad)
        self.data["dtype"] = str(next(model.parameters()).dtype)
        for name, p in params.items():
            if p.requires_grad:
                p.register_hook(self._grad_hook(name))
        self._token_id = getattr(model, "AU_PATCH_TOKEN_ID", None)
        self._tokenizer = getattr(model, "llama_tokenizer", None)
        self._expected = getattr(model, "num_au_query_token", None)
        encode = getattr(model, "encode_au_merge", None)
        if encode is not None:
            def encode_au_merge(*args, **kwargs):
                result = encode(*args, **kwargs)
                self._tokens = tokens_of(result)
                return result

            model.encode_au_merge = encode_au_merge
        model.register_forward_pre_hook(self._before_forward)
        model.register_forward_hook(self._after_forward)
        llm = getattr(model, "llama_model", None)
        if llm is not None:
            llm.register_forward_pre_hook(self._before_llm, with_kwargs=True)

    def _grad_hook(self, name: str):
        def hook(grad):
            norm = float(grad.detach().float().norm())
            norms = self.data["grad_norms"].setdefault(name, [])
            norms.append(norm)
            return None

        return hook

    def _before_forward(self, module, args):
        samples = args[0] if args else None
        if not isinstance(samples, dict):
            return None
        self._tokens = None
        self._input_ids = samples.get("input_ids")
        self.record_texts(self._input_ids)
        aus, masks = samples.get("aus"), samples.get("au_masks")
        self.data["batches"].append({
            "aus": list(aus.shape) if aus is not None else None,
            "aus_nonzero": bool(aus.abs().sum() > 0) if aus is not None else False,
            "valid_frames": masks.sum(dim=1).tolist() if masks is not None else None,
        })
        return None

    def _after_forward(self, module, args, output):
        loss = output.get("loss") if isinstance(output, dict) else None
        if loss is not None:
            self.data["losses"].append(float(loss.detach().float()))

    def _before_llm(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None or self._input_ids is None or self._token_id is None:
            return None
        self.data["splices"].append(splice_record(self._input_ids, embeds, self._tokens, self._token_id,
                                                  self._expected or 0))
        return None

    def record_texts(self, input_ids: Any, tokenizer: Any = None) -> None:
        """The LLM's input ids decoded, one text per sample: where the AU caption is looked for."""
        tokenizer = tokenizer or self._tokenizer
        if tokenizer is None or input_ids is None:
            return
        rows = input_ids if getattr(input_ids, "dim", lambda: 2)() == 2 else input_ids.unsqueeze(0)
        self.data["texts"] += [tokenizer.decode(row.tolist()) for row in rows]

    def record_inference(self, input_ids: Any, inputs_embeds: Any, tokens: Any, token_id: int,
                         expected: int) -> None:
        self.data["splices"].append(splice_record(input_ids, inputs_embeds, tokens, token_id, expected))

    def write(self, path: str) -> None:
        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return repr(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        with open(path, "w", encoding="utf-8") as f:
            json.dump(clean(self.data), f, indent=1)
