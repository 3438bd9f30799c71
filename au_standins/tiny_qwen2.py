"""A tiny random Qwen2 model and tokenizer, built offline in seconds, for CPU smoke runs and tests.

It has Qwen's special tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``), Qwen2's pre-tokenizer and a
Qwen2.5-style chat template, so LLaMA-Factory's ``qwen`` template, transformers, peft and vLLM treat it like
the real model. Its byte-level BPE is trained on the prompt contract, the AU vocabulary and any texts given
(e.g. the dataset's descriptions), and each AU code (``AU12``) is one token. The weights are random: untrained,
it generates gibberish; at ``DEMO_SIZE``, fully fine-tuned by ``tiny_cpu_full_sft.yaml``, it learns the task.

    python -m au_standins.tiny_qwen2 OUT_DIR [--texts dataset/train.json] [--demo-size]
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from au_core import contract
from au_core.facs import AU_NAMES, AU_PHRASES

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyQwen2Size:
    """The shape of the random model. The default is the smallest that exercises every code path (tests); the
    demo uses :data:`DEMO_SIZE`, large enough to learn the AU-to-words task on CPU in a couple of minutes."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    initializer_range: float = 0.2  # large enough that the untrained model's greedy text varies with the prompt


DEMO_SIZE = TinyQwen2Size(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                          num_key_value_heads=2, initializer_range=0.02)


def au_code_tokens() -> List[str]:
    """``AU01`` … ``AU45`` as whole tokens. Qwen2's pre-tokenizer splits digits one by one, so BPE alone cannot
    learn them; a tokenizer that suits the task sees each AU of the prompt as one token."""
    return list(AU_NAMES)


def _corpus(extra_texts: Iterable[str]) -> List[str]:
    texts = [contract.SYSTEM_PROMPT, contract.INSTRUCTION, contract.NEUTRAL_DESCRIPTION, "system", "user",
             "assistant"]
    texts += [f"{code}: {v / 100:.2f}" for code in AU_NAMES for v in range(0, 500, 7)]
    texts += list(AU_NAMES.values()) + list(AU_PHRASES.values())
    texts += list(extra_texts)
    return texts * 3


def build_tokenizer(out_dir: Path, extra_texts: Iterable[str] = (), vocab_size: int = 4096):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(extra_texts), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 unk_token=None, bos_token=None)
    hf.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    hf.add_tokens(au_code_tokens())
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(out_dir)
    tok.model.save(str(out_dir))  # vocab.json + merges.txt: the slow Qwen2Tokenizer (use_fast=False) needs them
    # Load as Qwen2Tokenizer in transformers 4.x and 5.x alike.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    if isinstance(cfg.get("extra_special_tokens"), list):
        cfg["additional_special_tokens"] = cfg.pop("extra_special_tokens")
    cfg.setdefault("chat_template", CHAT_TEMPLATE)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return hf


def build_tiny_qwen2(out_dir: Path, extra_texts: Iterable[str] = (), seed: int = 0,
                     size: TinyQwen2Size = TinyQwen2Size()) -> Path:
    """Write a tokenizer and a random fp32 ``Qwen2ForCausalLM`` to ``out_dir`` (≈0.3 M parameters at the default
    size, ≈0.7 M at :data:`DEMO_SIZE`)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir, extra_texts)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=size.hidden_size,
                      intermediate_size=size.intermediate_size, num_hidden_layers=size.num_hidden_layers,
                      num_attention_heads=size.num_attention_heads, num_key_value_heads=size.num_key_value_heads,
                      max_position_embeddings=1024, tie_word_embeddings=True, bos_token_id=0, eos_token_id=2,
                      pad_token_id=0, initializer_range=size.initializer_range)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=[2, 0], pad_token_id=0, do_sample=False)
    model.save_pretrained(out_dir)
    log.info("tiny Qwen2 written to %s", out_dir)
    return out_dir


def dataset_texts(paths: Sequence[Path]) -> List[str]:
    """Outputs and inputs of Alpaca files, to give the tiny tokenizer realistic merges."""
    texts: List[str] = []
    for path in paths:
        for rec in json.loads(Path(path).read_text(encoding="utf-8")):
            texts += [rec.get("input", ""), rec.get("output", "")]
    return texts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--texts", type=Path, nargs="*", default=[], help="Alpaca JSON files to train the BPE on")
    parser.add_argument("--demo-size", action="store_true", help="the larger model the demo trains")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_tiny_qwen2(args.out, dataset_texts(args.texts), size=DEMO_SIZE if args.demo_size else TinyQwen2Size())


if __name__ == "__main__":
    main()
