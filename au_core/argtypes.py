"""Command-line value types: an option's value is checked where it is parsed, so a bad value is one line naming
the option (``argument --batch-size: must be an integer >= 1, got '0'``) before any file is read or model loaded.

Defaults are not defined here: the CLI reads them from the settings dataclasses (:func:`default_of`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
from typing import Any, Callable, Optional


def default_of(cls: Any, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: each default is defined once, in its dataclass."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def _bounds(low: Optional[float], high: Optional[float]) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def int_range(low: Optional[int] = None, high: Optional[int] = None) -> Callable[[str], int]:
    """An integer type with inclusive bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {_bounds(low, high)}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {_bounds(low, high)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float, high: float, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in ``[low, high]`` (``[low, high)`` with ``high_open``); NaN and infinities are refused."""
    span = f"in [{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


_DEVICE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine: a missing GPU is named here, not
    deep inside model loading. (torch is imported only when a GPU is named.)"""
    m = _DEVICE.match(text.strip())
    if not m or (m.group(1) == "cpu" and m.group(2) is not None):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return "cpu"
    import torch

    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: no MPS device on this machine")
        return text.strip()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is visible on this machine (use --device cpu)")
    if index is not None and int(index) >= count:
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                                         f"cuda:{count - 1}")
    return text.strip()
