"""The seed guide's import path for the AU Agent, installed as ``my_affectgpt/models/au_agent.py`` by
``au-agent patch-affectgpt``: ``from my_affectgpt.models.au_agent import create_au_agent``.

The agent itself lives in the ``au-agent`` package (install it into AffectGPT's environment).
"""
from affectgpt_patch.agent import AUAgent, create_au_agent, shared_au_agent

__all__ = ["AUAgent", "create_au_agent", "shared_au_agent"]
