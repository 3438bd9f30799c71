"""Small test helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import socket
from pathlib import Path


def make_random_adapter(base: Path, out: Path, seed: int, r: int = 4) -> Path:
    """A real peft LoRA adapter with random (non-zero) weights, so it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
