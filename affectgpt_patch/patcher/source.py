"""One Python file of the checkout, parsed with ``ast``, and the text changes the edits make to it.

Edits find their place through the syntax tree (a class, a method, a statement of a given shape), never
through line numbers, and insert whole lines with the indentation of the statement they are anchored on, so
comments, blank lines, CRLF line ends and non-ASCII text elsewhere in the file are kept byte for byte.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Union

Stmt = ast.stmt


class Mismatch(Exception):
    """The checkout does not have the structure an edit is anchored on; the message says what was expected."""


@dataclass(frozen=True)
class Change:
    """Replace ``text[start:end]`` with ``new`` (character offsets)."""

    start: int
    end: int
    new: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.new + text[self.end:]


class Source:
    """The text of one file with its syntax tree and offset helpers."""

    def __init__(self, text: str, rel_path: str) -> None:
        self.text = text
        self.rel_path = rel_path
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.lines = text.splitlines(keepends=True)
        self._line_starts = [0]
        for line in self.lines:
            self._line_starts.append(self._line_starts[-1] + len(line))
        try:
            self.tree = ast.parse(text)
        except SyntaxError as e:
            raise Mismatch(f"is not valid Python (line {e.lineno}: {e.msg})") from None

    # ---- offsets

    def line_start(self, lineno: int) -> int:
        return self._line_starts[lineno - 1]

    def line_end(self, lineno: int) -> int:
        """Offset just after the line's end-of-line characters."""
        return self._line_starts[lineno]

    def offset(self, lineno: int, byte_col: int) -> int:
        """``ast`` columns count UTF-8 bytes; convert one to a character offset in the text."""
        line = self.lines[lineno - 1]
        return self.line_start(lineno) + len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def indent(self, node: ast.AST) -> str:
        line = self.lines[node.lineno - 1]
        return line[: len(line) - len(line.lstrip(" \t"))]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.offset(node.lineno, node.col_offset): self.offset(node.end_lineno, node.end_col_offset)]

    # ---- changes

    def _block(self, indent: str, lines: Sequence[str]) -> str:
        return "".join((indent + line if line else "") + self.newline for line in lines)

    def insert_after(self, node: Stmt, lines: Sequence[str], indent: Optional[str] = None,
                     blank_before: int = 0) -> Change:
        """New lines after the statement (and after any comment sharing its last line)."""
        at = self.line_end(node.end_lineno)
        prefix = self.newline if at > 0 and not self.text[:at].endswith(("\n", "\r")) else ""
        indent = self.indent(node) if indent is None else indent
        block = prefix + self.newline * blank_before + self._block(indent, lines)
        return Change(at, at, block)

    def insert_before(self, node: Stmt, lines: Sequence[str]) -> Change:
        at = self.line_start(node.lineno)
        return Change(at, at, self._block(self.indent(node), lines))

    def insert_at(self, lineno: int, byte_col: int, text: str) -> Change:
        at = self.offset(lineno, byte_col)
        return Change(at, at, text)

    def replace_node(self, node: ast.AST, new: str) -> Change:
        return Change(self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset), new)

    # ---- finding things

    def module_class(self, name: str, expected: str) -> ast.ClassDef:
        """The first module-level ``class name``."""
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
        raise Mismatch(f"expected a module-level class {name} ({expected})")

    def module_function(self, name: str, expected: str) -> ast.FunctionDef:
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
        raise Mismatch(f"expected a module-level function {name}() ({expected})")

    def last_import(self) -> Stmt:
        """The last import statement above the first class or function definition."""
        last = None
        for node in self.tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                break
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                last = node
        if last is None:
            raise Mismatch("expected import statements at the top of the module")
        return last

    def imports_name(self, module: str, name: str) -> bool:
        return any(isinstance(n, ast.ImportFrom) and n.module == module and any(a.name == name for a in n.names)
                   for n in ast.walk(self.tree))

    def ensure_import(self, module: str, *names: str) -> Optional["Change"]:
        """``from module import names`` after the last top import, unless the first name is imported already."""
        if self.imports_name(module, names[0]):
            return None
        return self.insert_after(self.last_import(), [f"from {module} import {', '.join(names)}  # au-agent"])


def method(cls: ast.ClassDef, name: str, expected: str = "") -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise Mismatch(f"expected method {cls.name}.{name}()" + (f" ({expected})" if expected else ""))


def has_method(cls: ast.ClassDef, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in cls.body)


def param_names(func: ast.FunctionDef) -> List[str]:
    return [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs]


def walk_stmts(body: Iterable[Stmt]) -> Iterator[Stmt]:
    """Every statement of a block, nested blocks included, in source order (not entering nested defs)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from walk_stmts(getattr(stmt, field, None) or [])
        for handler in getattr(stmt, "handlers", None) or []:
            yield from walk_stmts(handler.body)


def dotted(node: ast.AST) -> str:
    """``self.model.embed_tokens`` for an attribute chain, ``""`` for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def is_call_to(node: ast.AST, attr: str) -> bool:
    """A call whose function is ``<anything>.attr`` or ``attr``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == attr) or (isinstance(func, ast.Name) and func.id == attr)


def calls_in(stmts: Iterable[Stmt], attr: str) -> List[ast.Call]:
    return [n for s in stmts for n in ast.walk(s) if is_call_to(n, attr)]


def assign_to(stmt: Stmt) -> Optional[ast.AST]:
    """The single target of ``x = ...`` (or ``None``)."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return stmt.targets[0]
    return None


def subscript_key(node: ast.AST) -> Union[str, None]:
    """``'au'`` for ``img_list['au']``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def embed_statement(func: ast.FunctionDef, where: str) -> "tuple[Stmt, str]":
    """The statement that embeds the token ids (``… = ….embed_tokens(ids)``) and the ids' variable name.

    AffectGPT zeroes every patch-token id in ``ids`` just before this call, so new patch tokens are zeroed here.
    """
    for stmt in walk_stmts(func.body):
        value = getattr(stmt, "value", None)
        if isinstance(stmt, ast.Assign) and is_call_to(value, "embed_tokens") and len(value.args) == 1 \
                and isinstance(value.args[0], ast.Name):
            return stmt, value.args[0].id
    raise Mismatch(f"expected {where} to embed the prompt ids with `… = ….embed_tokens(ids)` after zeroing the "
                   f"patch-token ids")


def splice_list(func: ast.FunctionDef, where: str) -> ast.List:
    """The hard-coded ``[(patch_token_id, n_tokens, embeds), …]`` list a ``for`` loop splices features from."""
    for stmt in walk_stmts(func.body):
        if isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.List) and stmt.iter.elts and all(
                isinstance(e, ast.Tuple) and len(e.elts) == 3 for e in stmt.iter.elts):
            return stmt.iter
    raise Mismatch(f"expected {where} to loop over a list of (patch_token_id, query_token_number, embeds) tuples")


def zeroes(func: ast.FunctionDef, token: str) -> bool:
    """``ids[ids == <token>] = 0`` somewhere in the function (``token`` dotted, e.g. ``self.AU_PATCH_TOKEN_ID``)."""
    return any(isinstance(s, ast.Assign) and any(dotted(n) == token for t in s.targets for n in ast.walk(t))
               for s in walk_stmts(func.body))


def append_to_list(src: Source, lst: ast.List, element: str) -> Change:
    """Add ``element`` after the last element of a list literal (a trailing comma stays valid); on its own
    line, aligned with the last element, when the list spans several lines."""
    last = lst.elts[-1]
    if lst.end_lineno == last.end_lineno:
        return src.insert_at(last.end_lineno, last.end_col_offset, f", {element}")
    prefix = src.text[src.line_start(last.lineno): src.offset(last.lineno, last.col_offset)]
    indent = "".join(c if c == "\t" else " " for c in prefix)
    return src.insert_at(last.end_lineno, last.end_col_offset, f",{src.newline}{indent}{element}")


_CLASS_HEAD = re.compile(r"class\s+(?P<name>\w+)\s*(?P<paren>\(\s*)?")


def prepend_base(src: Source, cls: ast.ClassDef, base: str) -> Change:
    """``class X(A):`` → ``class X(base, A):``; ``class X:`` / ``class X():`` → ``class X(base):``."""
    if cls.bases:
        first = cls.bases[0]
        return src.insert_at(first.lineno, first.col_offset, f"{base}, ")
    line = src.lines[cls.lineno - 1]
    m = _CLASS_HEAD.search(line, len(line.encode("utf-8")[: cls.col_offset].decode("utf-8", errors="ignore")))
    if m is None or m.group("name") != cls.name:
        raise Mismatch(f"expected `class {cls.name}` on one line")
    at = src.line_start(cls.lineno) + (m.end() if m.group("paren") else m.end("name"))
    return Change(at, at, base if m.group("paren") else f"({base})")


def first_base_is(cls: ast.ClassDef, name: str) -> bool:
    return bool(cls.bases) and isinstance(cls.bases[0], ast.Name) and cls.bases[0].id == name
