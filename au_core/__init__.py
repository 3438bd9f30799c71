"""The shared core of au-agent: what data preparation, training and the runtime inside AffectGPT all agree on.

=========================  ====================================================================================
:mod:`.contract`           the prompt contract: the exact text the AU Agent is trained on and served
:mod:`.facs`               FACS tables: AU codes, names, phrases, intensity words
:mod:`.fidelity`           which AUs a description mentions, and its fidelity to its input
:mod:`.fidelity_lexicon`   the lexicon it matches: FACS nouns, verbs, phrases and negation patterns
:mod:`.openface`           the OpenFace CSV reader: one row per frame → AU intensities, validity, confidence
:mod:`.mer_factory`        MER-Factory's per-frame ``*_au_analysis.json`` reader (training data and JSON features)
:mod:`.record`             one teacher record (video, frame, AU values, description) and its JSON loader
:mod:`.agent_card`         the typed, versioned card training writes and the runtime reads
:mod:`.atomic`             atomic files and folders, output markers, file digests
:mod:`.stale_temps`        the temporary files that killed runs leave, and their removal
:mod:`.folder_lock`        an exclusive lock on a folder between processes (patcher, shards finishing at once)
:mod:`.video_names`        one name, one video: two inputs with one video name are refused
:mod:`.storage`            a full or read-only output file system as one error naming the user's output
:mod:`.termination`        SIGTERM handled like Ctrl-C (exit status 143)
:mod:`.errors`             :class:`AUAgentError`: one line naming the file or option, never a traceback
:mod:`.argtypes`           command-line value types, and ``default_of``: the CLI reads each default from its dataclass
=========================  ====================================================================================

It imports none of ``data_prep``, ``llamafactory_configs`` or ``affectgpt_patch``, and nothing heavier than
numpy, so it loads inside AffectGPT's environment (Python 3.10) without pulling in torch or the training stack.
"""
from .errors import AUAgentError

__all__ = ["AUAgentError"]
