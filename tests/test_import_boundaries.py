"""How the packages may depend on each other (see CONTRIBUTING.md):

    au_core        imports none of the others
    au_standins    au_core only (offline stand-ins for demo, bench and tests)
    data_prep, llamafactory_configs, affectgpt_patch    au_core; never each other, never au_standins on import
    au_agent_cli   au_core and the stages (the `au-agent` command); never au_standins

and the modules that run inside AffectGPT's environment import nothing heavy (torch, transformers, CLIP …) at
import time: AffectGPT imports them for every dataset it builds, also where no AU feature is ever computed.

Checked twice: statically (every import statement, also those inside functions) and in a fresh interpreter
(``sys.modules`` after importing every module of a package).
"""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data_prep", "llamafactory_configs", "affectgpt_patch")
ALLOWED: Dict[str, Set[str]] = {
    "au_core": set(),
    "au_standins": {"au_core"},
    **{stage: {"au_core"} for stage in STAGES},
    "au_agent_cli": {"au_core", *STAGES},  # the `au-agent` command, above the stages
}
#: Lazy (inside a function) imports of the stand-ins that a stage may make: `au-agent smoke-affectgpt` builds
#: its tiny models and media from them when it runs, never on import.
LAZY_STANDINS = {"affectgpt_patch.smoke"}
OURS = set(ALLOWED)
#: What runs inside AffectGPT: the mixin and everything it reaches on import.
AFFECTGPT_RUNTIME = ("affectgpt_patch.mixin", "affectgpt_patch.agent", "affectgpt_patch.agent.cache",
                     "affectgpt_patch.features.compute", "affectgpt_patch.features.source",
                     "affectgpt_patch.features.store", "affectgpt_patch.features.clip_encoder",
                     "affectgpt_patch.features.frames", "affectgpt_patch.features.precompute",
                     "affectgpt_patch.captions.text_route", "au_core.agent_card", "au_core.openface",
                     "au_core.mer_factory")
HEAVY = ("torch", "transformers", "peft", "clip", "ray", "vllm", "llamafactory", "deepspeed",
         "sacrebleu", "rouge_score", "matplotlib", "scipy", "pandas")


def _modules(package: str) -> List[str]:
    root = REPO / package
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=package + "."):
        names.append(info.name)
    return names


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` — imports for type annotations only, never run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, module: str) -> List[tuple]:
    """(imported module, line, inside a function?) for every import statement of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) or _type_checking(child)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append((target, child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_statement_crosses_a_stage(package):
    crossings = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for target, line, lazy in _imports(path, module):
            top = target.split(".")[0]
            if top not in OURS or top == package or top in ALLOWED[package]:
                continue
            if top == "au_standins" and lazy and any(module.startswith(p) for p in LAZY_STANDINS):
                continue
            crossings.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not crossings, "\n".join(crossings)


def _loaded_after_import(modules: List[str]) -> Set[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_importing_a_package_loads_no_other_stage(package):
    # every module, except the optional engines whose own dependency is the point of importing them
    modules = [m for m in _modules(package) if m not in ("affectgpt_patch.engines.ray_engine",
                                                         "au_agent_cli.__main__")]  # that one runs the command
    loaded = _loaded_after_import(modules)
    foreign = sorted(m for m in loaded if m.split(".")[0] in OURS - {package} - ALLOWED[package])
    assert not foreign, f"importing {package} loaded {foreign}"


def test_runtime_inside_affectgpt_imports_nothing_heavy():
    loaded = _loaded_after_import(list(AFFECTGPT_RUNTIME))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"importing the AffectGPT runtime loaded {heavy}"


#: What AffectGPT's processes must never reach through the runtime, even lazily: the evaluation and inspection
#: (quality), the Ray engine and the smoke run; and Ray itself.
NOT_IN_RUNTIME = ("affectgpt_patch.quality", "affectgpt_patch.engines", "affectgpt_patch.smoke", "ray")


def _module_path(module: str) -> Path:
    path = REPO.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _reached(start: List[str]) -> Dict[str, str]:
    """Every module of ours that ``start`` reaches through any import statement, also those inside functions,
    with the first import that reaches it (``file:line``); other imports are listed by name."""
    reached: Dict[str, str] = {m: "start" for m in start}
    todo = list(start)
    while todo:
        module = todo.pop()
        path = _module_path(module)
        for target, line, _lazy in _imports(path, module):
            where = f"{path.relative_to(REPO)}:{line}"
            parts = target.split(".")
            # `from package import module` names a module too: take the longest prefix that is a file of ours
            candidates = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
            if parts[0] not in OURS:
                reached.setdefault(target, where)
                continue
            for name in candidates:
                if _module_path(name).is_file() and name not in reached:
                    reached[name] = where
                    todo.append(name)
                    break
    return reached


def test_runtime_inside_affectgpt_never_reaches_evaluation_inspection_ray_or_smoke():
    bad = sorted(f"{m} (from {where})" for m, where in _reached(list(AFFECTGPT_RUNTIME)).items()
                 if m == "ray" or m.startswith(tuple(p + "." for p in NOT_IN_RUNTIME) + ("ray.",))
                 or m in NOT_IN_RUNTIME)
    assert not bad, "the runtime that AffectGPT imports reaches:\n" + "\n".join(bad)
