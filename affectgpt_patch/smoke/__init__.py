"""``au-agent smoke-affectgpt``: prove on a CPU, in about a minute, that a patched AffectGPT checkout trains
and answers with AU features, before GPU time is spent (see :mod:`.runner`).

Modules: :mod:`.media` (a tiny dataset in MERCaptionPlus' layout; the tiny LLM / CLIP / HuBERT folders come
from :mod:`au_standins.affectgpt_encoders`), :mod:`.shims` (CPU run-time shims and probes), :mod:`.launch`
(what runs inside the AffectGPT process), :mod:`.configure` (the copy's config.py and smoke config, ``--set``),
:mod:`.report` (the table, :mod:`.caption_report` its text-route rows), :mod:`.runner` (the whole run),
:mod:`.compare` (one sample answered without AU, with the caption, with the features) and :mod:`.clip_compare`
(``au-agent compare-affectgpt``: the same for a user's clip).
"""
from .runner import SmokeOptions, run_smoke

__all__ = ["SmokeOptions", "run_smoke"]
