"""``make bench``: the speed of au-agent's stages on synthetic data and tiny offline models.

    python -m benchmarks.run                       # prepare-data + AU features on CPU → bench_out/results.json
    python -m benchmarks.run --only features --videos 10 --frames 120 --max-new-tokens 8
    python -m benchmarks.run --gpu --model /models/Qwen2.5-7B-Instruct --adapter out/agent/checkpoint-best

Modules: :mod:`.bench_prepare` (records/s of ``prepare_dataset``), :mod:`.bench_features` (the seed guide's
per-frame loop against ``precompute``, cold and warm, with a feature-equality check), :mod:`.bench_gpu`
(descriptions/s of the hf and vLLM backends with a real-size model), :mod:`.bench_ray` (the Ray engine against
the local one), :mod:`.bench_demo` (``make demo``'s training and evaluation), :mod:`.common` (timing, targets,
table), :mod:`.run` (the command). ``make gpu-check`` is :mod:`.gpu_check` (the run, the table and the report),
with its rows in :mod:`.gpu_check_hf` (the generation backends) and :mod:`.gpu_check_rows` (the others).
Speed is measured here only; the test suite never asserts a timing.
"""
