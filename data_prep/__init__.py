"""Stage 1 — raw inputs → instruction dataset.

MER-Factory outputs are read (:mod:`.sources`, one reader per input schema), cleaned and cross-checked against
OpenFace CSVs (:mod:`.clean`), and written as a LLaMA-Factory dataset (:mod:`.build`; :mod:`.json_records` writes
its JSON text fast). What the agent sees is defined by the prompt contract in :mod:`au_core.contract`, which
training and inference import too.
"""
