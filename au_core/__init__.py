"""The shared core of au-agent: what data preparation, training and the runtime inside AffectGPT all agree on.

=====================  ====================================================================================
:mod:`.contract`       the prompt contract: the exact text the AU Agent is trained on and served
:mod:`.facs`           FACS tables: AU codes, names, phrases, intensity words
:mod:`.fidelity`       the AU lexicon: which AUs a description mentions, and its fidelity to its input
:mod:`.openface`       the OpenFace CSV reader: one row per frame → AU intensities, validity, confidence
:mod:`.mer_factory`    MER-Factory's per-frame ``*_au_analysis.json`` reader (training data and JSON features)
:mod:`.record`         one teacher record (video, frame, AU values, description) and its JSON loader
:mod:`.agent_card`     the typed, versioned card training writes and the runtime reads
:mod:`.atomic`         atomic files and folders, output markers, file digests
:mod:`.errors`         :class:`AUAgentError`: one line naming the file or option, never a traceback
:mod:`.argtypes`       command-line value types, and ``default_of``: the CLI reads each default from its dataclass
=====================  ====================================================================================

It imports none of ``data_prep``, ``llamafactory_configs`` or ``affectgpt_patch``, and nothing heavier than
numpy, so it loads inside AffectGPT's environment (Python 3.10) without pulling in torch or the training stack.
"""
from .errors import AUAgentError

__all__ = ["AUAgentError"]
