"""The model-side AU branch (templates/au_branch.py) on its own: feature width, seeded initialisation of a
frozen branch, and checkpoints of another AU configuration refused with the key and both shapes."""
import importlib.util

import pytest
import torch
import torch.nn as nn

from affectgpt_patch.branch_template import TEMPLATE_DIR


@pytest.fixture(scope="module")
def template():
    spec = importlib.util.spec_from_file_location("au_branch_template", TEMPLATE_DIR / "au_branch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model(template, **kwargs):
    """What AffectGPT's model holds: the branch as ``au_branch`` beside other layers."""
    m = nn.Module()
    m.llm_proj = nn.Linear(4, 4)
    m.au_branch = template.AUProjector(llm_hidden_size=16, **kwargs)
    return m


def au_state(m):
    return {f"au_branch.{k}": v.clone() for k, v in m.au_branch.state_dict().items()}


@pytest.mark.parametrize("width", [512, 768])
def test_width_comes_from_the_config(template, width):
    branch = template.AUProjector(16, num_tokens=2, feature_dim=width)
    pooled, tokens = branch(torch.randn(3, 8, width))
    assert pooled.shape == (3, 2, width) and tokens.shape == (3, 2, 16)
    assert branch.au_attention_mlp.bias is None  # softmax over time cancels a constant score
    with pytest.raises(ValueError, match=f"AU features are 384-d, the AU branch takes au_feature_dim {width}"):
        branch(torch.randn(3, 8, 384))


def test_initial_weights_depend_on_the_seed_only(template):
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = template.AUProjector(16, num_tokens=2, frozen=True, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    torch.manual_seed(2)
    second = template.AUProjector(16, num_tokens=2, frozen=True, seed=7)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in first.parameters())
    other = template.AUProjector(16, num_tokens=2, frozen=True, seed=8)
    assert not torch.equal(other.au_llama_proj.weight, first.au_llama_proj.weight)


def test_a_frozen_branch_saved_like_affectgpt_is_rebuilt_identically(template):
    """AffectGPT's runner saves only parameters that require grad: the frozen branch is not in the checkpoint,
    so inference must rebuild the very weights training used."""
    trained = model(template, frozen=True)
    saved = {k: v for k, v in trained.state_dict().items()
             if k not in dict(trained.named_parameters()) or dict(trained.named_parameters())[k].requires_grad}
    assert not any(k.startswith("au_branch.") for k in saved)
    torch.manual_seed(123)  # another process, another global seed
    inference = model(template, frozen=True)
    inference.load_state_dict(saved, strict=False)
    for key, value in au_state(trained).items():
        assert torch.equal(au_state(inference)[key], value)


@pytest.mark.parametrize("saved_kwargs, kwargs, expected", [
    ({"num_tokens": 3}, {"num_tokens": 1},
     r"checkpoint key au_branch.au_attention_mlp.weight has shape \[3, 512\], this model's is \[1, 512\]: "
     r"the checkpoint's num_au_query_token differs from the config's \(3 vs 1\)"),
    ({"feature_dim": 768}, {},
     r"au_branch.au_attention_mlp.weight has shape \[1, 768\], this model's is \[1, 512\]: the checkpoint's "
     r"au_feature_dim"),
    ({"fusion_type": "attention"}, {"fusion_type": "mean"},
     r"checkpoint key au_branch.au_attention_mlp.weight \[1, 512\] does not fit this model's AU branch "
     r"\(au_fusion_type: mean\): the checkpoint was trained with au_fusion_type: attention"),
    ({"fusion_type": "mean"}, {"fusion_type": "attention"},
     r"checkpoint has an AU branch without au_branch.au_attention_mlp.weight .*\[\[1, 512\]\].*trained with "
     r"au_fusion_type: mean"),
])
def test_a_checkpoint_of_another_au_configuration_is_refused(template, saved_kwargs, kwargs, expected):
    checkpoint = model(template, **saved_kwargs).state_dict()
    target = model(template, **kwargs)
    before = au_state(target)
    with pytest.raises(ValueError, match=expected):
        target.load_state_dict(checkpoint, strict=False)
    with pytest.raises(ValueError, match=expected):
        target.load_state_dict(checkpoint)
    for key, value in before.items():
        assert torch.equal(au_state(target)[key], value)


def test_matching_and_older_checkpoints_load(template):
    source = model(template, num_tokens=2)
    target = model(template, num_tokens=2, seed=5)
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.au_branch.au_llama_proj.weight, source.au_branch.au_llama_proj.weight)
    older = dict(source.state_dict())
    older["au_branch.au_attention_mlp.bias"] = torch.zeros(2)  # saved by versions with the useless bias
    target.load_state_dict(older)  # strict: the dropped bias is not an unexpected key
    released = {k: v for k, v in source.state_dict().items() if not k.startswith("au_branch.")}
    assert target.load_state_dict(released, strict=False).missing_keys  # no AU keys: the branch stays as built
    mean = model(template, fusion_type="mean", num_tokens=1)
    model(template, fusion_type="mean", num_tokens=4).load_state_dict(mean.state_dict())  # same shapes: fine
