"""Reading one key from whatever a caller hands over as a config: a dict, an OmegaConf node, an AffectGPT
config section or any object that has the key as an attribute.

Imports nothing: the dataset mixin reads its settings with it inside AffectGPT's data-loading code.
"""
from __future__ import annotations

import os
from typing import Any, Union

#: A file or folder as a config gives it (a str) or code builds it (a Path): what every path parameter accepts.
PathArg = Union[str, os.PathLike[str]]


def config_get(cfg: Any, key: str) -> Any:
    """``cfg.get(key)`` where ``cfg`` has a ``get`` (attribute access to a missing key raises on an OmegaConf
    node), else ``cfg.key``; None when the key is absent or ``cfg`` is None."""
    getter = getattr(cfg, "get", None)
    if callable(getter):
        try:
            return getter(key)
        except Exception:  # noqa: BLE001 - any config object without the key
            pass
    return getattr(cfg, key, None)
