"""Stage 3 — runtime: the AU Agent, CLIP text features, caches, the AffectGPT dataset mixin and patcher.

Nothing heavy (torch, transformers, clip) is imported here: this package is imported inside AffectGPT's
data-loading code, where every import costs every worker.
"""
