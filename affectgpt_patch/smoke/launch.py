"""Runs inside the temporary AffectGPT copy (cwd = its code root, AffectGPT's interpreter):

    python -m affectgpt_patch.smoke.launch train --out DIR --device cpu -- --cfg-path CFG
    python -m affectgpt_patch.smoke.launch infer --out DIR --device cpu --cfg-path CFG --ckpt CKPT

``train`` applies the shims of :mod:`.shims` and the probes, then runs the checkout's own ``train.py`` as
``__main__``. ``infer`` builds the model from the checkpoint with the checkout's ``from_config`` and answers
one sample with its ``Chat``, the way ``inference_hybird.py`` does (dataset built without configs, settings
set by hand, ``postprocess_*``, ``get_prompt_for_multimodal``, ``answer_sample``). Each writes
``{out}/{train,infer}.json`` and the AU tensors it saw (``au_*.pt``) for the smoke table.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any, List, Optional, Sequence

from ..branch_template import branch_constants
from . import shims

log = logging.getLogger(__name__)

#: What the AU fork's inference_hybird.py sets by hand on a dataset built without configs (its training
#: ``__init__`` reads them from ``dataset_cfg``), for raw media; set only where the class lacks them. The
#: per-modality flags are its Nonverbal commits' (88593b0).
FORK_INFERENCE_ATTRIBUTES = {"frame_sampling": "uniform", "use_realtime_extraction": False,
                             "use_preextracted_features": False, "mer_factory_output": None, "_clip_model": None,
                             "_clip_preprocess": None, "use_au_clip_realtime": False,
                             "use_preextracted_frame": False, "use_preextracted_face": False,
                             "use_preextracted_audio": False, "use_preextracted_au": False}
USER_MESSAGE = "Please infer the person's emotional state and provide your reasoning process."  # inference_hybird's
TRAIN_REPORT, INFER_REPORT = shims.TRAIN_REPORT, shims.INFER_REPORT
AU_INITIAL, AU_FINAL, AU_INFERENCE = shims.AU_INITIAL, shims.AU_FINAL, shims.AU_INFERENCE


def _module(name: str) -> Optional[Any]:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def import_affectgpt(recorder: shims.Recorder) -> None:
    """Import AffectGPT's packages as ``train.py`` does; when they fail only because pytorchvideo needs a module
    torchvision dropped, alias it (as upstream AffectGPT does itself), say so, and import again."""
    try:
        importlib.import_module("my_affectgpt.tasks")
    except ModuleNotFoundError as e:
        if e.name != shims.FUNCTIONAL_TENSOR:
            raise
        for name in [m for m in sys.modules if m == "my_affectgpt" or m.startswith("my_affectgpt.")]:
            del sys.modules[name]
        shims.alias_functional_tensor()
        recorder.note_shims([f"{shims.FUNCTIONAL_TENSOR} aliased to torchvision.transforms.functional "
                             f"(this checkout imports pytorchvideo without that alias; torchvision >= 0.17 "
                             f"removed the module)"])
        importlib.import_module("my_affectgpt.tasks")


def apply_cpu_shims(recorder: shims.Recorder) -> None:
    runner = _module("my_affectgpt.runners.runner_base")
    task = _module("my_affectgpt.tasks.base_task")
    loader_utils = _module("my_affectgpt.datasets.datasets.dataloader_utils")
    if runner is not None and hasattr(runner, "RunnerBase"):
        shims.patch_runner_model(runner.RunnerBase)
        recorder.note_shims(["RunnerBase.model falls back to the unwrapped model"])
    for name in shims.patch_prefetch_loader(runner, loader_utils):
        recorder.note_shims([f"{name}.PrefetchLoader without CUDA streams"])
    for name in shims.patch_torch_version(task, runner):
        recorder.note_shims([f"{name} sees torch.__version__ {shims.SUPPORTED_TORCH[0]}"])


def train(argv: List[str], out: Path, device: str) -> int:
    import torch

    recorder = shims.Recorder()
    built = {}

    def after_build(model, cfg):
        if device == "cpu":
            model = model.float()  # the LLM loads in float16 and CPU has no autocast
            recorder.note_shims(["model cast to float32"])
        recorder.attach(model)
        torch.save(shims.au_state(model), out / AU_INITIAL)
        built["model"] = model
        return model

    sys.argv = ["train.py", *argv]
    rc = 0
    try:
        import_affectgpt(recorder)
        if device == "cpu":
            apply_cpu_shims(recorder)
        task = importlib.import_module("my_affectgpt.tasks.base_task")
        shims.patch_build_model(task.BaseTask, after_build)
        runpy.run_path("train.py", run_name="__main__")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if rc:
            recorder.data["error"] = f"train.py exited with {e.code}"
    except BaseException as e:  # noqa: BLE001 - reported in the table, then re-raised as an exit status
        recorder.data["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
        traceback.print_exc()
        rc = 1
    finally:
        if "model" in built:
            torch.save(shims.au_state(built["model"]), out / AU_FINAL)
        recorder.write(str(out / TRAIN_REPORT))
    return rc


def _wrap_generate(chat: Any, recorder: shims.Recorder, token_id: int, expected: int, tokens: Any) -> None:
    """Record what ``answer_sample`` splices: its token ids (``to_token_ids``) and the ``inputs_embeds`` it
    hands to ``generate``."""
    seen = {}
    to_token_ids = chat.to_token_ids

    def capture_ids(*args, **kwargs):
        ids = to_token_ids(*args, **kwargs)
        seen["ids"] = ids
        return ids

    chat.to_token_ids = capture_ids
    llm = chat.model.llama_model
    generate = llm.generate

    def capture_generate(*args, **kwargs):
        embeds = kwargs.get("inputs_embeds")
        ids = seen.get("ids")
        if embeds is not None and ids is not None:
            ids = ids[-embeds.shape[1]:].unsqueeze(0).to(embeds.device)  # answer_sample may cut the head
            recorder.record_texts(ids, chat.model.llama_tokenizer)
            if token_id is not None:  # a tokenizer without <AUHere> (the AU fork's Nonverbal commits) splices none
                recorder.record_inference(ids, embeds, None if tokens is None else tokens[:1], token_id, expected)
        output = generate(*args, **kwargs)
        sequences = getattr(output, "sequences", output)
        recorder.data["generated_tokens"] = int(sequences.shape[-1])  # from inputs_embeds: new tokens only
        return output

    llm.generate = capture_generate


def infer(cfg_path: str, ckpt: str, out: Path, device: str, max_new_tokens: int) -> int:
    recorder = shims.Recorder()
    try:
        import_affectgpt(recorder)
        if device == "cpu":
            shims.patch_torch_version(_module("my_affectgpt.tasks.base_task"),
                                      _module("my_affectgpt.runners.runner_base"))
        answer = _answer_one(cfg_path, ckpt, out, device, max_new_tokens, recorder)
        recorder.data["answer"] = answer
        rc = 0
    except BaseException as e:  # noqa: BLE001 - reported in the table
        recorder.data["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
        traceback.print_exc()
        rc = 1
    finally:
        recorder.write(str(out / INFER_REPORT))
    return rc


def _answer_one(cfg_path: str, ckpt: str, out: Path, device: str, max_new_tokens: int,
                recorder: shims.Recorder) -> str:
    import torch

    # what inference_hybird.py imports: every registered task, model, processor and dataset
    for name in ("my_affectgpt.tasks", "my_affectgpt.models", "my_affectgpt.runners", "my_affectgpt.processors",
                 "my_affectgpt.datasets.builders", "my_affectgpt.datasets.builders.image_text_pair_builder"):
        importlib.import_module(name)
    from my_affectgpt.common.config import Config
    from my_affectgpt.common.registry import registry
    from my_affectgpt.conversation.conversation_video import Chat
    from my_affectgpt.processors.base_processor import BaseProcessor

    cfg = Config(argparse.Namespace(cfg_path=cfg_path, options=None))
    model_cfg, datasets_cfg, inference_cfg = cfg.model_cfg, cfg.datasets_cfg, cfg.inference_cfg
    model_cfg.ckpt_3 = ckpt  # the highest-priority checkpoint, as inference_hybird.py sets it
    model = registry.get_model_class(model_cfg.arch).from_config(model_cfg)
    if device == "cpu":
        model = model.float()
    model = model.to(device).eval()
    torch.save(shims.au_state(model), out / AU_INFERENCE)
    recorder.data["dtype"] = str(next(model.parameters()).dtype)
    chat = Chat(model, model_cfg, device=device)

    name = next(iter(datasets_cfg))
    face_or_frame = datasets_cfg[name].face_or_frame
    dataset_cls = registry.get_builder_class(name).train_dataset_cls()  # no configs: __init__ returns early
    dataset_cls.needed_data = dataset_cls.get_needed_data(face_or_frame)
    dataset_cls.vis_processor = BaseProcessor()
    dataset_cls.img_processor = BaseProcessor()
    for attr, key in (("vis_processor", "vis_processor"), ("img_processor", "img_processor")):
        proc_cfg = inference_cfg.get(key)
        if proc_cfg is not None:
            setattr(dataset_cls, attr, registry.get_processor_class(proc_cfg.train.name).from_config(proc_cfg.train))
    dataset_cls.n_frms = model_cfg.vis_processor.train.n_frms
    for attr, value in {"frame_n_frms": dataset_cls.n_frms, **FORK_INFERENCE_ATTRIBUTES}.items():
        if not hasattr(dataset_cls, attr):
            setattr(dataset_cls, attr, value)
    if hasattr(dataset_cls, "configure_au"):
        dataset_cls.configure_au(inference_cfg, *datasets_cfg.values(), model_cfg)
    prompt_kwargs = {}
    if hasattr(dataset_cls, "get_nonverbal_text"):  # the AU fork's Nonverbal mode, set as its inference script does
        dataset_cls.nonverbal_json = inference_cfg.get("nonverbal_json")
        dataset_cls.use_nonverbal_text = bool(inference_cfg.get("use_nonverbal_text"))
        dataset_cls._nonverbal_data = None

    sample_name = dataset_cls.annotation[0]["name"]
    subtitle = dataset_cls.name2subtitle[sample_name]
    sample = {"name": sample_name}
    paths = {}
    for key, hook in (("video_path", "_get_video_path"), ("audio_path", "_get_audio_path"),
                      ("face_npy", "_get_face_path"), ("image_path", "_get_image_path")):
        paths[key] = getattr(dataset_cls, hook)(sample) if hasattr(dataset_cls, hook) else None
    if "sample_name" in inspect.signature(dataset_cls.read_frame_face_audio_text).parameters:
        paths["sample_name"] = sample_name
    sample_data = dataset_cls.read_frame_face_audio_text(**paths)
    recorder.data["sample"] = sample_name
    if hasattr(dataset_cls, "get_nonverbal_text"):
        prompt_kwargs["nonverbal_text"] = dataset_cls.get_nonverbal_text(sample_name)
    au = sample_data.get("au")
    au = au if hasattr(au, "shape") else None
    recorder.data["batches"].append({"aus": list(au.shape) if au is not None else None,
                                     "aus_nonzero": bool(au.abs().sum() > 0) if au is not None else False,
                                     "valid_frames": [int(sample_data["au_mask"].sum())]
                                     if sample_data.get("au_mask") is not None else None})

    _, audio_llms = chat.postprocess_audio(sample_data)
    frame_hiddens, frame_llms = chat.postprocess_frame(sample_data)
    face_hiddens, face_llms = chat.postprocess_face(sample_data)
    _, image_llms = chat.postprocess_image(sample_data)
    audio_hiddens = chat.postprocess_audio(sample_data)[0]
    multi_llms = None
    if face_or_frame.startswith("multiface"):
        _, multi_llms = chat.postprocess_multi(face_hiddens, audio_hiddens)
    elif face_or_frame.startswith("multiframe"):
        _, multi_llms = chat.postprocess_multi(frame_hiddens, audio_hiddens)
    au_llms = chat.postprocess_au(sample_data)[1] if hasattr(chat, "postprocess_au") else None
    img_list = {"audio": audio_llms, "frame": frame_llms, "face": face_llms, "image": image_llms,
                "multi": multi_llms, "au": au_llms}
    token_id = model.llama_tokenizer.get_vocab().get(branch_constants()["AU_PATCH_TOKEN"])
    _wrap_generate(chat, recorder, token_id, int(getattr(model, "num_au_query_token", 0)), au_llms)
    prompt = dataset_cls.get_prompt_for_multimodal(face_or_frame, subtitle, USER_MESSAGE, **prompt_kwargs)
    return chat.answer_sample(prompt=prompt, img_list=img_list, num_beams=1, temperature=1, do_sample=False,
                              top_p=0.9, max_new_tokens=max_new_tokens, max_length=2000)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["train", "infer"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cfg-path")
    parser.add_argument("--ckpt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    sys.path.insert(0, os.getcwd())  # AffectGPT's scripts import `config` and `my_affectgpt` from the code root
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "train":
        return train(rest, args.out, args.device)
    return infer(args.cfg_path, args.ckpt, args.out, args.device, args.max_new_tokens)


if __name__ == "__main__":
    sys.exit(main())
