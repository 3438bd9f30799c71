"""``my_affectgpt/datasets/builders/image_text_pair_builder.py`` is read, not edited: the generated configs may
only name datasets that have a ``@registry.register_builder("name")`` class, because ``train.py`` looks every
``datasets:`` key up in the registry. (The dataset classes those builders instantiate get the AU modality from
the ``BaseDataset`` edit, so the builders need no change.)
"""
from __future__ import annotations

import ast
from typing import Dict

from .source import Source, dotted

PATH = "my_affectgpt/datasets/builders/image_text_pair_builder.py"


def registered_builders(src: Source) -> Dict[str, str]:
    """``{"mercaptionplus": "MERCaptionPlus_Dataset", ...}``: builder name → its ``train_dataset_cls``."""
    found: Dict[str, str] = {}
    for node in src.tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and dotted(deco.func).endswith("register_builder") and deco.args \
                    and isinstance(deco.args[0], ast.Constant) and isinstance(deco.args[0].value, str):
                cls = ""
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "train_dataset_cls"
                                                            for t in stmt.targets):
                        cls = dotted(stmt.value)
                found[deco.args[0].value] = cls
    return found
