"""``inference_hybird.py`` and ``inference_sample.py`` (same edits, one module): AU settings and AU tokens.

Both scripts build a dataset with no arguments (so its ``__init__`` returns early) and set what it needs by
hand. After their ``dataset_cls.n_frms = ...`` line they now call ``dataset_cls.configure_au(...)`` with the
inference, dataset and model configs (the seed's ``use_au_agent``, ``au_agent_*``, ``openface_output_dir``,
``mer_factory_output`` keys); after ``img_list['multi'] = ...`` they add ``img_list['au']``.
"""
from __future__ import annotations

import ast
from typing import List, Optional

from .edit import Edit, FilePatch
from .source import Change, Mismatch, Source, assign_to, calls_in, is_call_to, subscript_key, walk_stmts

PATHS = ("inference_hybird.py", "inference_sample.py")


def _assigned_names(src: Source) -> "set[str]":
    return {t.id for s in walk_stmts(src.tree.body) for t in getattr(s, "targets", []) if isinstance(t, ast.Name)}


def _configure(src: Source) -> Optional[Change]:
    stmts = list(walk_stmts(src.tree.body))
    if calls_in(stmts, "configure_au"):
        return None
    for stmt in stmts:
        target = assign_to(stmt)
        if isinstance(target, ast.Attribute) and target.attr == "n_frms" and isinstance(target.value, ast.Name):
            names = _assigned_names(src)
            missing = [n for n in ("inference_cfg", "model_cfg") if n not in names]
            if missing:
                raise Mismatch(f"expected the script to read {' and '.join(missing)} from its Config")
            sources: List[str] = ["inference_cfg"]
            if "datasets_cfg" in names:
                sources.append("*datasets_cfg.values()")
            sources.append("model_cfg")
            return src.insert_after(stmt, [f"{target.value.id}.configure_au({', '.join(sources)})  # au-agent: AU "
                                           f"settings (affectgpt_patch.mixin)"])
    raise Mismatch("expected `dataset_cls.n_frms = ...` where the script configures its dataset by hand")


def _img_list(src: Source) -> Optional[Change]:
    stmts = list(walk_stmts(src.tree.body))
    multi = None
    for stmt in stmts:
        key = subscript_key(assign_to(stmt))
        if key == "au":
            return None
        if key == "multi" and multi is None and isinstance(assign_to(stmt).value, ast.Name):
            multi = stmt
    if multi is None:
        raise Mismatch("expected `img_list['multi'] = ...` where the script collects the modalities for Chat")
    for stmt in stmts:
        value = getattr(stmt, "value", None)
        if isinstance(stmt, ast.Assign) and is_call_to(value, "postprocess_audio") \
                and isinstance(value.func, ast.Attribute) and isinstance(value.func.value, ast.Name) \
                and len(value.args) == 1 and isinstance(value.args[0], ast.Name):
            chat, sample = value.func.value.id, value.args[0].id
            img_list = assign_to(multi).value.id
            return src.insert_after(multi, [f"{img_list}['au'] = {chat}.postprocess_au({sample})[1]  # au-agent"])
    raise Mismatch("expected `... = chat.postprocess_audio(sample_data)` beside the other postprocess_* calls")


def patches(variant: str) -> "list[FilePatch]":
    edits = (Edit("configure the dataset's AU settings", _configure),
             Edit("pass img_list['au'] to Chat", _img_list))
    return [FilePatch(path, edits) for path in PATHS]
