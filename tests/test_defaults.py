"""Each default is defined once, in a settings dataclass (or the AU branch's ``DEFAULTS`` for the model keys),
and everything else reads it: the command line, the mixin inside AffectGPT and the configs the patcher writes.
Changing a default is then a one-line change; these tests fail when a second copy appears."""
from __future__ import annotations

import argparse
import dataclasses

import pytest
from fixtures.affectgpt import code_root, make_checkout
from omegaconf import OmegaConf

import au_agent_cli
from affectgpt_patch import mixin
from affectgpt_patch.agent.config import CONFIG_KEYS, AgentConfig
from affectgpt_patch.au_settings import AUSettings
from affectgpt_patch.branch_template import branch_constants
from affectgpt_patch.captions.caption import CaptionSettings
from affectgpt_patch.captions.text_route import TextRouteSettings
from affectgpt_patch.features.clip_encoder import DEFAULT_CLIP
from affectgpt_patch.features.precompute import PrecomputeOptions
from affectgpt_patch.features.source import SourceSettings
from affectgpt_patch.features.store import FeatureSettings
from affectgpt_patch.patcher import ConfigOptions, apply_patch
from affectgpt_patch.patcher.configs import INFERENCE_CONFIG, TRAIN_CONFIG
from affectgpt_patch.quality.inspect_options import InspectOptions
from affectgpt_patch.smoke import SmokeOptions
from affectgpt_patch.smoke.clip_compare import CompareOptions
from au_core.argtypes import default_of
from data_prep.build import PrepareOptions
from llamafactory_configs.train import TrainOptions

#: (command, option dest) → the dataclass field whose default the option shows. An option with a default that
#: is not listed here (or in CLI_ONLY) fails test_every_cli_default_comes_from_a_dataclass.
FROM_DATACLASS = {
    **{("prepare-data", name): (PrepareOptions, name) for name in ("val_ratio", "seed", "text_key", "min_confidence")},
    ("train", "recipe"): (TrainOptions, "recipe"),
    **{(cmd, "batch_size"): (AgentConfig, "batch_size") for cmd in ("test-agent", "describe", "eval")},
    **{(cmd, "max_new_tokens"): (AgentConfig, "max_new_tokens")
       for cmd in ("test-agent", "describe", "precompute", "eval")},
    ("describe", "min_confidence"): (FeatureSettings, "min_confidence"),
    **{("precompute", name): (PrecomputeOptions, name) for name in ("batch_size", "chunk_videos")},
    **{("precompute", name): (FeatureSettings, name) for name in ("frames", "sampling", "min_confidence")},
    ("precompute", "clip_model"): (SourceSettings, "au_clip_model"),
    ("precompute", "au_text_max_tokens"): (CaptionSettings, "au_text_max_tokens"),
    ("captions", "max_missing"): (SourceSettings, "au_max_missing"),
    **{("inspect", name): (InspectOptions, name) for name in ("videos", "sort")},
    **{("smoke-affectgpt", name): (SmokeOptions, name) for name in ("steps", "device", "clip_width", "au_route")},
    **{("compare-affectgpt", name): (CompareOptions, name) for name in ("steps", "device")},
}
#: Options with a default that no library setting has: how the command runs, not what it computes.
CLI_ONLY = {("describe", "engine"), ("precompute", "engine"), ("eval", "engine")}
TEXT = {("precompute", "shard"): "{}/{}".format(*default_of(PrecomputeOptions, "shard"))}


def _options():
    parser = au_agent_cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in subs.choices.items():
        for action in sub._actions:
            if action.default not in (None, False, [], (), argparse.SUPPRESS):
                yield command, action


def test_every_cli_default_comes_from_a_dataclass():
    seen = set()
    for command, action in _options():
        key = (command, action.dest)
        seen.add(key)
        if key in CLI_ONLY:
            continue
        if key in TEXT:
            assert action.default == TEXT[key]
            continue
        assert key in FROM_DATACLASS, f"au-agent {command} --{action.dest}: a default defined in the CLI " \
                                      f"({action.default!r}); define it in a settings dataclass and read it there"
        cls, name = FROM_DATACLASS[key]
        assert action.default == default_of(cls, name), key
    assert set(FROM_DATACLASS) | CLI_ONLY | set(TEXT) <= seen, "the table names an option the CLI no longer has"


def test_help_shows_the_defaults():
    for command, action in _options():
        if action.help not in (None, argparse.SUPPRESS) and (command, action.dest) not in CLI_ONLY:
            assert "%(default)" in action.help, f"au-agent {command} --{action.dest}: help without its default"


def test_runtime_settings_share_the_feature_defaults():
    """The AffectGPT config keys default to what `au-agent precompute` computes with, so a precomputed folder
    and a dataset configured with defaults agree."""
    assert {mixin.SETTINGS[key] for key in ("au_sampling", "au_min_confidence")} \
        == {FeatureSettings.sampling, FeatureSettings.min_confidence}  # the frame keys are FeatureSettings'
    assert mixin.SETTINGS["au_frames"] is None and mixin.DEFAULT_FRAMES == FeatureSettings.frames  # T: n_frms
    assert SourceSettings.au_clip_model == DEFAULT_CLIP
    for concern in (SourceSettings, TextRouteSettings):
        assert {k: v for k, v in mixin.SETTINGS.items() if k in {f.name for f in dataclasses.fields(concern)}} \
            == dataclasses.asdict(concern())
    assert AUSettings() == AUSettings.from_values({})  # a dataset without configs has the dataclasses' defaults
    for key, name in CONFIG_KEYS.items():
        if key in mixin.SETTINGS and mixin.SETTINGS[key] is not None:
            assert mixin.SETTINGS[key] == default_of(AgentConfig, name), key
    assert mixin.SETTINGS["num_au_query_token"] == branch_constants()["DEFAULTS"]["num_au_query_token"]
    assert mixin.AU_PATCH_TOKEN == branch_constants()["AU_PATCH_TOKEN"]


@pytest.mark.parametrize("variant", ["upstream", "au_fork"])
def test_generated_affectgpt_configs_carry_the_same_defaults(tmp_path, variant):
    root = make_checkout(tmp_path, variant)
    apply_patch(root, ConfigOptions())
    model_defaults = branch_constants()["DEFAULTS"]
    for rel in (TRAIN_CONFIG, INFERENCE_CONFIG):
        text = (code_root(root) / rel).read_text()
        cfg = OmegaConf.create(text)
        for name in cfg.datasets:
            dataset = cfg.datasets[name]
            assert dataset.au_agent_use_lora == default_of(AgentConfig, "use_lora")
            assert dataset.au_agent_use_lora == mixin.SETTINGS["au_agent_use_lora"]
        for key, value in model_defaults.items():
            if variant == "upstream":
                assert cfg.model[key] == value, key
        assert f"default {SourceSettings.au_clip_model}" in text and f"default {SourceSettings.au_max_missing}" in text
