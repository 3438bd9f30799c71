"""Offline stand-ins for the real inputs and models: synthetic OpenFace / MER-Factory data, a tiny Qwen2, a tiny
CLIP. They let the demo, the benchmarks and the tests run the real pipeline (real LLaMA-Factory, transformers,
peft, OpenAI CLIP) on a CPU with nothing downloaded. Product code never imports them on its runtime path.
"""
