"""The ``hf`` backend: transformers + peft, batched greedy generation.

Prompts are bucketed by token length and each batch holds prompts of one length, so no padding ever enters a
batch: a description does not depend on which other prompts share its batch, and batched output equals
one-at-a-time output. Longest buckets run first so memory problems show up at once.

On CUDA, cuBLAS may choose a different kernel (a different summation order) for a different number of rows,
and bf16 rounding then flips a near-tie in greedy decoding. Two settings remove that: ``deterministic`` (see
:func:`deterministic_kernels`) and ``fixed_batch_rows`` (every call has the same shape); ``make gpu-check``
measures whether either is needed on a given GPU and what it costs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, cast

from au_core.errors import AUAgentError

from .config import AgentConfig
from .prompts import encode_prompt, stop_token_ids

log = logging.getLogger(__name__)


def _dtype_kwarg() -> str:
    """transformers ≥ 4.56 calls it ``dtype``; AffectGPT's 4.49 calls it ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def resolve_device_dtype(config: AgentConfig):
    import torch

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if config.dtype != "auto":
        return device, getattr(torch, config.dtype)
    if device.startswith("cuda"):
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


#: cuBLAS needs a fixed workspace for deterministic results; set before the first CUDA matmul of the process.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_kernels() -> Iterator[None]:
    """Deterministic algorithms, no TF32 and no reduced-precision (bf16/fp16) reductions inside the block; the
    previous settings are restored after it. An op without a deterministic implementation warns instead of
    stopping generation. Export ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` before Python starts for the guarantee to
    cover cuBLAS (it is set here when missing, which covers a process that has not yet run a CUDA matmul)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             matmul.allow_tf32, matmul.allow_bf16_reduced_precision_reduction,
             matmul.allow_fp16_reduced_precision_reduction, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    matmul.allow_bf16_reduced_precision_reduction = matmul.allow_fp16_reduced_precision_reduction = False
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        (matmul.allow_tf32, matmul.allow_bf16_reduced_precision_reduction,
         matmul.allow_fp16_reduced_precision_reduction, cudnn.allow_tf32, cudnn.deterministic,
         cudnn.benchmark) = saved[2:]


def _quantization(config: AgentConfig) -> Dict[str, Any]:
    if not (config.load_in_8bit or config.load_in_4bit):
        return {}
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise AUAgentError("8-/4-bit loading needs bitsandbytes: pip install bitsandbytes") from None
    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=config.load_in_8bit,
                                                      load_in_4bit=config.load_in_4bit)}


#: Options of a newer peft that are off whenever the option they belong to is off.
_OFF_WITH = {"qalora_group_size": "use_qalora", "megatron_core": "megatron_config"}


def _is_off(value: Any) -> bool:
    return value is None or value is False or value == {} or value == []


def _is_off_with(key: str, data: Dict[str, Any]) -> bool:
    return key in _OFF_WITH and _is_off(data.get(_OFF_WITH[key]))


def adapter_config_for_installed_peft(adapter: Any) -> Any:
    """The LoRA config of a local adapter as the installed peft can build it, or None to let peft read the file.

    An adapter trained in this project's training venv (a newer peft) lists options that AffectGPT's peft 0.13 does
    not know, and peft 0.13 then refuses the whole file. Such options left off are dropped; one that is on would
    change what the adapter computes, so it is an error naming it (newer peft versions drop it with a warning)."""
    import peft
    from peft import LoraConfig

    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("peft_type") != "LORA":
        return None
    known = {f.name for f in dataclasses.fields(LoraConfig)}
    unknown = {k: v for k, v in data.items() if k not in known and k != "peft_version"}
    used = [f"{k}={v!r}" for k, v in unknown.items() if not _is_off(v) and not _is_off_with(k, data)]
    if used:
        raise AUAgentError(f"the adapter uses {', '.join(sorted(used))}, which peft {peft.__version__} does not "
                           "know: install the peft it was trained with, or train it without that option", path)
    if all(k in known for k in data):
        return None
    return LoraConfig(**{k: v for k, v in data.items() if k in known})


class HFBackend:
    name = "hf"

    def __init__(self, config: AgentConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        assert config.base_model is not None  # agent_config refuses the hf backend without one
        self.config = config
        self.device, dtype = resolve_device_dtype(config)
        hub = {"revision": config.revision} if config.revision else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.base_model, **hub)
        except (OSError, ValueError) as e:
            raise AUAgentError(f"cannot load the tokenizer ({str(e).splitlines()[0]})", config.base_model) from None
        quant = _quantization(config)
        kwargs: Dict[str, Any] = {_dtype_kwarg(): dtype, **quant, **hub}
        if quant:
            kwargs["device_map"] = {"": self.device}
        try:
            model = AutoModelForCausalLM.from_pretrained(config.base_model, **kwargs)
        except (OSError, ValueError) as e:
            raise AUAgentError(f"cannot load the base model ({str(e).splitlines()[0]})", config.base_model) from None
        if config.lora_weights:
            model = self._attach_adapter(model, config.lora_weights, merge=config.merge_lora and not quant)
        if not quant:
            model = model.to(self.device)
        self.model = model.eval()
        self.stop_ids = stop_token_ids(self.tokenizer)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        # An explicit generation config: the base model's (sampling, repetition penalty) must not leak in.
        self.generation_config = GenerationConfig(
            max_new_tokens=config.max_new_tokens, do_sample=config.do_sample, num_beams=1,
            temperature=config.temperature if config.do_sample else None,
            top_p=config.top_p if config.do_sample else None, top_k=None,
            repetition_penalty=1.0, eos_token_id=self.stop_ids, pad_token_id=pad_id)
        self._torch = torch

    def _attach_adapter(self, model: Any, adapter: str, merge: bool) -> Any:
        from peft import PeftModel

        config = adapter_config_for_installed_peft(adapter)
        try:
            model = PeftModel.from_pretrained(model, adapter, config=config)
        except (RuntimeError, ValueError, KeyError) as e:
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise AUAgentError(f"the adapter does not fit base model {self.config.base_model!r}: {first[:300]}",
                               adapter) from None
        if merge:
            model = model.merge_and_unload()
            log.info("LoRA adapter merged into the base weights")
        return model

    def generate(self, inputs: Sequence[str], batch_size: int) -> List[str]:
        torch = self._torch
        encoded = [encode_prompt(self.tokenizer, s) for s in inputs]
        buckets: Dict[int, List[int]] = {}
        for i, prompt_ids in enumerate(encoded):
            buckets.setdefault(len(prompt_ids), []).append(i)
        outputs: List[str] = [""] * len(inputs)
        if self.config.do_sample:
            torch.manual_seed(self.config.seed)
        rows = self.config.fixed_batch_rows
        step = max(1, min(batch_size, rows) if rows else batch_size)
        kernels = deterministic_kernels() if self.config.deterministic else contextlib.nullcontext()
        with kernels, torch.inference_mode():
            for length in sorted(buckets, reverse=True):
                members = buckets[length]
                for start in range(0, len(members), step):
                    chunk = members[start:start + step]
                    ids = [encoded[i] for i in chunk]
                    ids += [ids[-1]] * (rows - len(ids))  # fixed_batch_rows: pad with copies (nothing when off)
                    input_ids = torch.tensor(ids, device=self.device)
                    out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                              generation_config=self.generation_config)
                    for row, i in enumerate(chunk):
                        text = self.tokenizer.decode(out[row, length:], skip_special_tokens=True)
                        outputs[i] = cast(str, text).strip()  # one sequence decodes to one str
        return outputs

    def close(self) -> None:
        self.model = None
