"""``my_affectgpt/datasets/datasets/base_dataset.py``: the dataset mixin, first in every dataset's MRO.

Right after ``class BaseDataset`` the name is rebound to ``class BaseDataset(<Mixin>, BaseDataset)``. Every
dataset module imports ``BaseDataset`` from here, so every dataset class — those the training builders
instantiate and those ``inference_hybird.py`` builds with no arguments — gets the AU modality, and the mixin's
methods run before the original ones.

* upstream: :class:`~affectgpt_patch.mixin.UpstreamAUDatasetMixin` (the whole AU modality), installed as
  ``AUDatasetMixin``;
* the AU fork: :class:`~affectgpt_patch.mixin.AUForkSourceMixin` (settings and the seed's extraction methods),
  installed as ``AUSourceMixin``, plus
  an agent branch at the head of the fork's own AU ``if``/``elif`` chain in ``read_frame_face_audio_text``,
  and the ``au_preextracted`` flag its model requires for CLIP features.
"""
from __future__ import annotations

import ast
from typing import Optional, Set

from .edit import Edit, FilePatch
from .source import Change, Mismatch, Source, assign_to, first_base_is, has_method, method, param_names, subscript_key

PATH = "my_affectgpt/datasets/datasets/base_dataset.py"
CLASS = "BaseDataset"
UPSTREAM_MIXIN, FORK_MIXIN = "AUDatasetMixin", "AUSourceMixin"
#: What AUDatasetMixin overrides or relies on.
UPSTREAM_METHODS = ("__init__", "get_needed_data", "get_prompt_for_multimodal", "replace_token_for_multimodal",
                    "read_frame_face_audio_text", "__getitem__", "collater")
#: Names that only the AU fork's BaseDataset defines.
FORK_MARKERS = ("_extract_au_features_realtime", "_load_au_clip_features_from_json")
AGENT_TEST = "getattr(self, 'use_au_agent', False)"


def base_class(src: Source) -> ast.ClassDef:
    return src.module_class(CLASS, "AffectGPT's dataset base class")


def reads_au(func: ast.FunctionDef) -> bool:
    """``'au' in self.needed_data`` anywhere in the function."""
    return any(_is_au_test(n) for n in ast.walk(func))


def has_dataset_au(src: Source) -> bool:
    cls = base_class(src)
    return any(has_method(cls, m) for m in FORK_MARKERS) or (
        has_method(cls, "read_frame_face_audio_text") and reads_au(method(cls, "read_frame_face_audio_text")))


def known_modes(src: Source) -> Set[str]:
    """The ``face_or_frame`` values ``get_needed_data``'s if/elif chain handles (it has no ``else``)."""
    func = method(base_class(src), "get_needed_data")
    modes = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    modes.add(side.value)
    return modes


def _rebind(mixin: str, required: tuple):
    def plan(src: Source) -> Optional[Change]:
        classes = [n for n in src.tree.body if isinstance(n, ast.ClassDef) and n.name == CLASS]
        if not classes:
            raise Mismatch(f"expected a module-level class {CLASS}")
        if any(first_base_is(c, mixin) for c in classes[1:]):
            return None
        original = classes[0]
        missing = [m for m in required if not has_method(original, m)]
        if missing:
            raise Mismatch(f"expected {CLASS} to define {', '.join(missing)}")
        params = param_names(method(original, "__init__"))
        if not {"model_cfg", "dataset_cfg"} <= set(params):
            raise Mismatch(f"expected {CLASS}.__init__ to take model_cfg and dataset_cfg")
        return src.insert_after(original, [
            "# ---- au-agent patch-affectgpt: the AU modality (undo with `au-agent patch-affectgpt PATH --revert`)",
            f"from affectgpt_patch.mixin import {mixin}",
            f"_{CLASS}WithoutAU = {CLASS}",
            "",
            "",
            f"class {CLASS}({mixin}, _{CLASS}WithoutAU):",
            f'    """{CLASS} with au-agent\'s AU modality first in the MRO (see affectgpt_patch.mixin)."""',
        ], indent="", blank_before=2)

    return plan


# ---- the AU fork: its own AU code gets the agent path


def _is_au_test(node: ast.AST) -> bool:
    return (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value == "au"
            and len(node.ops) == 1 and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], ast.Attribute) and node.comparators[0].attr == "needed_data")


def _is_agent_test(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "use_au_agent")


def _fork_reader(src: Source) -> ast.FunctionDef:
    return method(base_class(src), "read_frame_face_audio_text", "the AU fork reads every modality there")


def _fork_au_block(func: ast.FunctionDef) -> "tuple[ast.If, str]":
    """The top-level ``if 'au' in self.needed_data:`` whose body is the fork's if/elif chain of AU sources,
    and the variable it fills (``sample_data['au'] = au`` follows it)."""
    body = func.body
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.If) and _is_au_test(stmt.test) and stmt.body and isinstance(stmt.body[0], ast.If):
            following = body[i + 1] if i + 1 < len(body) else None
            target = assign_to(following) if following is not None else None
            if subscript_key(target) == "au" and isinstance(following.value, ast.Name):
                return stmt, following.value.id
    raise Mismatch("expected read_frame_face_audio_text() to hold `if 'au' in self.needed_data:` with an if/elif "
                   "chain of AU sources, followed by `sample_data['au'] = au`")


def _fork_agent_branch(src: Source) -> Optional[Change]:
    func = _fork_reader(src)
    block, var = _fork_au_block(func)
    chain = block.body[0]
    if _is_agent_test(chain.test):
        return None
    params = param_names(func)
    if "sample_name" not in params:
        raise Mismatch("expected read_frame_face_audio_text() to take sample_name")
    kwargs = ", ".join(f"{p}={p}" for p in ("sample_name", "video_path", "audio_path", "face_npy") if p in params)
    indent = src.indent(chain)
    nl = src.newline
    text = (f"if {AGENT_TEST}:  # au-agent: OpenFace → AU Agent → CLIP (au-agent patch-affectgpt){nl}"
            f"{indent}    {var} = self.au_feature_for_sample({kwargs})[0]{nl}{indent}el")
    return src.insert_at(chain.lineno, chain.col_offset, text)


def _fork_preextracted_flag(src: Source) -> Optional[Change]:
    func = _fork_reader(src)
    for i, stmt in enumerate(func.body):
        if subscript_key(assign_to(stmt)) == "au_preextracted":
            following = func.body[i + 1] if i + 1 < len(func.body) else None
            if isinstance(following, ast.If) and _is_agent_test(following.test):
                return None
            return src.insert_after(stmt, [
                f"if {AGENT_TEST}:  # au-agent: its CLIP features are model-ready, like pre-extracted ones",
                "    sample_data['au_preextracted'] = True"])
    raise Mismatch("expected read_frame_face_audio_text() to set sample_data['au_preextracted']")


def patch(variant: str) -> FilePatch:
    if variant == "au-fork":
        return FilePatch(PATH, (
            Edit(f"put {FORK_MIXIN} first in BaseDataset's MRO", _rebind(FORK_MIXIN, ("read_frame_face_audio_text",))),
            Edit("add the AU Agent branch to the fork's AU sources", _fork_agent_branch),
            Edit("mark AU Agent features as model-ready (au_preextracted)", _fork_preextracted_flag),
        ))
    return FilePatch(PATH, (Edit(f"put {UPSTREAM_MIXIN} first in BaseDataset's MRO",
                                 _rebind(UPSTREAM_MIXIN, UPSTREAM_METHODS)),))
