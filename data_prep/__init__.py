"""Stage 1 — raw inputs → instruction dataset.

OpenFace CSVs and MER-Factory outputs are read (:mod:`.openface`, :mod:`.sources`), cleaned (:mod:`.clean`),
and written as a LLaMA-Factory dataset (:mod:`.build`). :mod:`.contract` defines what the AU Agent sees and is
imported by training and inference alike.
"""
from .errors import AUAgentError

__all__ = ["AUAgentError"]
