"""The AU modality inside patched fixture checkouts: the dataset mixin (training and inference), the model-side
AU branch and Chat. Heavy AffectGPT dependencies are stubbed (decord) or tiny (a random Qwen2, a random CLIP);
features come from this project's own pipeline (OpenFace CSV → rules agent → CLIP), from files written by it,
or from MER-Factory's per-frame descriptions."""
import importlib.util
import logging

import numpy as np
import pytest
import torch
from fixtures.affectgpt import NAMES, code_root, imported, make_checkout
from omegaconf import OmegaConf

from affectgpt_patch import mixin, per_process
from affectgpt_patch.agent import create_au_agent
from affectgpt_patch.branch_template import TEMPLATE_DIR, branch_constants
from affectgpt_patch.features.clip_encoder import RELEASED_WIDTHS, load_clip_text_encoder
from affectgpt_patch.features.compute import compute_video_features, features_from_descriptions, video_features
from affectgpt_patch.features.store import FeatureSettings, save_video_features
from affectgpt_patch.patcher import ConfigOptions, apply_patch
from affectgpt_patch.patcher.configs import TRAIN_CONFIG
from au_core import mer_factory
from au_core.errors import AUAgentError
from au_core.openface import read_openface_csv
from au_core.record import load_json

N_TOKENS = 2  # num_au_query_token, so the <AUHere> expansion is visible


@pytest.fixture()
def env(tmp_path, monkeypatch, tiny_clip):
    """A fresh CLIP/description cache and warning memory; the AU settings every test shares."""
    monkeypatch.setenv("AU_AGENT_CACHE_DIR", str(tmp_path / "cache"))
    per_process.reset()
    return {"au_agent_backend": "rules", "au_agent_cache_dir": str(tmp_path / "cache"), "au_clip_model": str(tiny_clip)}


def load_template():
    spec = importlib.util.spec_from_file_location("au_branch_template", TEMPLATE_DIR / "au_branch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patched(tmp_path, variant="upstream", layout="nested", **options):
    root = make_checkout(tmp_path / "repo", variant, layout)
    apply_patch(root, ConfigOptions(**options))
    cfg = OmegaConf.load(code_root(root) / TRAIN_CONFIG)
    cfg.model.num_au_query_token = N_TOKENS
    return root, cfg


def apply(section, settings):
    """Set the shared AU settings on a config section (a dataset's or ``inference``)."""
    for key, value in settings.items():
        section[key] = value


def train_split(ag, ds_cfg, cfg):
    """The MER-Caption+ training split, built the way AffectGPT's train.py builds it."""
    return ag.registry.get_builder_class("mercaptionplus")(ds_cfg, cfg.model).build_datasets()["train"]


def built_after_refusal(ag, ds_cfg, cfg, message: str, **fix):
    """The training split is refused with ``message``, then built once ``fix`` is set on the dataset config."""
    with pytest.raises(AUAgentError, match=message):
        train_split(ag, ds_cfg, cfg)
    for key, value in fix.items():
        ds_cfg[key] = value
    return train_split(ag, ds_cfg, cfg)


def reference_features(name, samples, env):
    """What `au-agent precompute` computes for the video, straight from the features API."""
    agent = create_au_agent(backend="rules", cache_dir=env["au_agent_cache_dir"])
    return video_features(name, openface_dir=samples / "openface", agent=agent,
                          encoder=load_clip_text_encoder(env["au_clip_model"]), settings=FeatureSettings(frames=8))


# ---- pieces without a checkout


def test_mode_detection_and_prompt_segment():
    assert mixin.is_au_mode("multiface_audio_face_frame_au_text") and not mixin.is_au_mode("multiface_audio_face_text")
    assert not mixin.is_au_mode("audioonly") and mixin.mode_without_au("audio_au_text") == "audio_text"
    prompt = mixin.insert_au_segment("###Human: Audio: <AudioHere>. The subtitle of this video is: x. Now, please.")
    assert prompt.index("<AU><AUHere></AU>") < prompt.index("The subtitle")
    assert mixin.insert_au_segment("###Human: Now, please go.") == "###Human: " + mixin.AU_PROMPT + "Now, please go."
    assert mixin.insert_au_segment("Describe it.") == mixin.AU_PROMPT + "Describe it."
    assert mixin.name_from_paths(None, "/a/audio/s_7.wav", "/a/faces/s_7/s_7.npy") == "s_7"
    assert mixin.name_from_paths("/v/s_8.mp4") == "s_8" and mixin.name_from_paths() is None


def test_defaults_agree_between_mixin_template_and_patcher():
    constants = branch_constants()
    assert constants["AU_PATCH_TOKEN"] == mixin.AU_PATCH_TOKEN
    assert constants["DEFAULTS"]["au_feature_dim"] == RELEASED_WIDTHS[mixin.SETTINGS["au_clip_model"]]
    assert constants["DEFAULTS"]["num_au_query_token"] == mixin.SETTINGS["num_au_query_token"]


class _Plain:
    """AffectGPT's BaseDataset reduced to its constructor (no AU mode: nothing is checked)."""

    def __init__(self, vis_processor=None, model_cfg=None, dataset_cfg=None):
        self.model_cfg, self.dataset_cfg = model_cfg, dataset_cfg


def test_settings_are_read_once_and_changed_in_one_step(env):
    class Dataset(mixin.UpstreamAUDatasetMixin, _Plain):
        pass

    model_cfg = {"num_au_query_token": 3, "au_frames": 2, "vis_processor": {"train": {"n_frms": 16}}}
    dataset = Dataset(None, model_cfg, {"use_au_agent": True, "au_frames": 4, **env})  # dataset_cfg wins
    settings, source = dataset.au_settings, dataset.au_source
    assert settings.features.frames == 4 and settings.num_au_query_token == 3 and settings.source.use_au_agent
    assert dict(settings.agent)["au_agent_backend"] == "rules"
    assert dataset.use_au_agent is True and dataset.au_frames == 4 and dataset.au_route == "features"
    assert dataset.au_source is source and "use_au_agent" not in vars(dataset)  # built once, held in one place
    dataset.n_frms = 16  # the same value: nothing is read again
    assert dataset.au_settings is settings and dataset.au_source is source
    dataset.au_frames = None  # by hand, as the seed guide does: T is AffectGPT's n_frms again
    assert dataset.au_settings.features.frames == 16 and dataset.au_source is not source
    dataset.configure_au({"au_frames": 2})
    assert dataset.au_source.features.frames == 2 and dataset.use_au_agent is True  # the other keys stay
    with pytest.raises(AttributeError, match="au_agent_api_base"):
        dataset.au_agent_api_base  # an agent key never given is no attribute, as before

    Dataset.au_route = "both"  # on the class, by hand: read when a dataset first reads its settings
    assert Dataset(None, None, None).au_settings.text.au_route == "both"


@pytest.mark.parametrize("fusion", ["mean", "attention"])
def test_au_branch_maps_features_to_llm_tokens(fusion):
    template = load_template()
    torch.manual_seed(0)
    branch = template.AUProjector(llm_hidden_size=48, num_tokens=3, fusion_type=fusion)
    aus = torch.randn(4, 8, 512)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2] = False  # no valid frame at all
    pooled, tokens = branch(aus, mask)
    assert tokens.shape == (4, 3, 48) and pooled.shape == (4, 3, 512) and torch.isfinite(tokens).all()
    changed = aus.clone()
    changed[1, 5:] = 100.0  # masked frames do not matter
    changed[2] = -7.0
    assert torch.allclose(branch(changed, mask)[1], tokens, atol=1e-5)
    assert torch.allclose(pooled[2], torch.zeros_like(pooled[2]))
    assert branch(aus)[1].shape == (4, 3, 48)  # no mask: every frame counts
    with pytest.raises(ValueError, match="au_fusion_type"):
        template.AUProjector(48, fusion_type="qformer")


# ---- training: builder → dataset → collater → model


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_patched_training_path(tmp_path, samples, env, tiny_llm, data_dir, layout):
    root, cfg = patched(tmp_path, layout=layout, openface_dir=str(samples / "openface"))
    ds_cfg = cfg.datasets.mercaptionplus
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        # the builder runs BaseDataset.__init__, whose debug __getitem__ + collater already need every AU setting
        dataset = train_split(ag, ds_cfg, cfg)
        assert type(dataset).__mro__[1].__name__ == "BaseDataset" and isinstance(dataset, mixin.UpstreamAUDatasetMixin)
        assert dataset.needed_data == ["frame", "face", "audio", "au"]
        items = [dataset[i] for i in range(len(NAMES))]
        au_id = dataset.tokenizer.get_vocab()["<AUHere>"]
        for name, item in zip(NAMES, items):
            expected = reference_features(name, samples, env)
            np.testing.assert_array_equal(item["au"].numpy(), expected.features)
            assert item["au"].dtype == torch.float32 and item["au_mask"].tolist() == expected.mask.tolist()
            ids = item["text_input"]
            positions = torch.where(ids == au_id)[0]
            assert len(positions) == N_TOKENS and (positions.diff() == 1).all()
            assert "frame by frame, are: <AU><AUHere><AUHere></AU>. The subtitle" in dataset.tokenizer.decode(ids)
        batch = dataset.collater(items)
        assert batch["aus"].shape == (3, 8, 512) and batch["au_masks"].shape == (3, 8)
        assert batch["au_masks"].dtype == torch.bool and "faces" in batch and "audios" in batch

        model = ag.registry.get_model_class("affectgpt").from_config(cfg.model)
        assert model.num_au_query_token == N_TOKENS and model.au_branch.fusion_type == "attention"
        loss = model(batch)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        assert model.au_branch.au_llama_proj.weight.grad.abs().sum() > 0  # the AU tokens reached the LLM

        # a released checkpoint (no AU weights) still loads; the AU branch keeps its fresh weights
        released = {k: v for k, v in model.state_dict().items() if not k.startswith("au_branch.")}
        torch.save({"model": released}, tmp_path / "released.pth")
        cfg.model.ckpt = str(tmp_path / "released.pth")
        del cfg.model.num_au_query_token, cfg.model.au_fusion_type, cfg.model.frozen_au_proj
        reloaded = ag.registry.get_model_class("affectgpt").from_config(cfg.model)
        assert reloaded.num_au_query_token == 1 and reloaded.au_branch.fusion_type == "attention"


def test_config_errors_fail_loudly_at_build(tmp_path, samples, env, tiny_llm, data_dir):
    root, cfg = patched(tmp_path, openface_dir=str(tmp_path / "no_such_dir"))
    ds_cfg = cfg.datasets.mercaptionplus
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        builder = ag.registry.get_builder_class("mercaptionplus")(ds_cfg, cfg.model)
        with pytest.raises(AUAgentError, match="openface_output_dir: folder not found"):
            builder.build_datasets()
        ds_cfg.openface_output_dir = None
        with pytest.raises(AUAgentError, match="AU features need au_precomputed_dir or openface_output_dir"):
            builder.build_datasets()


def test_precomputed_features_made_another_way_fail_the_build(tmp_path, samples, env, tiny_llm, data_dir):
    agent = create_au_agent(backend="rules", cache_dir=env["au_agent_cache_dir"])
    encoder = load_clip_text_encoder(env["au_clip_model"])
    for name in NAMES:
        track = read_openface_csv(samples / "openface" / f"{name}.csv")
        save_video_features(tmp_path / "features", compute_video_features(track, agent, encoder,
                                                                          FeatureSettings(frames=4)))
    root, cfg = patched(tmp_path, precomputed_dir=str(tmp_path / "features"))
    ds_cfg = cfg.datasets.mercaptionplus
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        # once the config says what the files hold, they are used as they are
        dataset = built_after_refusal(ag, ds_cfg, cfg, r"features: precomputed AU features do not match the config: "
                                                       r"T 4 \(config: 8\) in 3 of 3 files", au_frames=4)
        assert dataset[0]["au"].shape == (4, 512)


def test_non_au_modes_are_untouched(tmp_path, env, tiny_llm, data_dir):
    root, cfg = patched(tmp_path)
    ds_cfg = cfg.datasets.mercaptionplus
    ds_cfg.face_or_frame = "multiface_audio_face_text"
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = train_split(ag, ds_cfg, cfg)
        item = dataset[0]
        assert "au" not in item and "aus" not in dataset.collater([item, dataset[1]])
        assert "<AUHere>" not in dataset.get_prompt_for_multimodal("multiface_audio_face_text", "hi", "q?")
        with pytest.raises(AUAgentError, match="has no mode 'image_text'"):
            dataset.get_needed_data("image_au_text")


# ---- where features come from


def _inference_dataset(ag, cfg, needed_mode="multiface_audio_face_frame_au_text"):
    """What the patched inference_hybird.py does: no-argument dataset, attributes by hand, configure_au."""
    dataset = ag.builders.MER2023_Dataset()
    dataset.needed_data = dataset.get_needed_data(needed_mode)
    processor = cfg.inference.vis_processor.train
    dataset.vis_processor = ag.registry.get_processor_class(processor.name).from_config(processor)
    dataset.n_frms = cfg.model.vis_processor.train.n_frms
    dataset.configure_au(cfg.inference, *cfg.datasets.values(), cfg.model)
    return dataset


def _paths(data_dir, name):
    return (str(data_dir / "video" / f"{name}.mp4"), str(data_dir / "openface_face" / name / f"{name}.npy"),
            str(data_dir / "audio" / f"{name}.wav"), None)


def test_inference_path_with_chat(tmp_path, samples, env, tiny_llm, data_dir):
    root, cfg = patched(tmp_path, openface_dir=str(samples / "openface"))
    apply(cfg.inference, env)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = _inference_dataset(ag, cfg)
        assert not hasattr(dataset, "tokenizer")  # __init__ returned early: nothing but class-level defaults
        assert dataset.use_au_agent is True and dataset.openface_output_dir == str(samples / "openface")
        sample_data = dataset.read_frame_face_audio_text(*_paths(data_dir, "sample_00002"))
        expected = reference_features("sample_00002", samples, env)
        np.testing.assert_array_equal(sample_data["au"].numpy(), expected.features)

        model = ag.registry.get_model_class("affectgpt").from_config(cfg.model).eval()
        chat = ag.conversation.Chat(model, cfg.model, device="cpu")
        img_list = {"audio": chat.postprocess_audio(sample_data)[1], "frame": chat.postprocess_frame(sample_data)[1],
                    "face": chat.postprocess_face(sample_data)[1], "image": None}
        img_list["multi"] = chat.postprocess_multi(chat.postprocess_face(sample_data)[0],
                                                   chat.postprocess_audio(sample_data)[0])[1]
        img_list["au"] = chat.postprocess_au(sample_data)[1]
        assert img_list["au"].shape == (1, N_TOKENS, model.llama_model.config.hidden_size)
        prompt = dataset.get_prompt_for_multimodal("multiface_audio_face_frame_au_text", "hello", "How is she?")
        assert chat.replace_token_for_multimodal(prompt).count("<AUHere>") == N_TOKENS
        with torch.no_grad():
            assert isinstance(chat.answer_sample(prompt, img_list, do_sample=False, max_new_tokens=2), str)
        img_list["au"] = None
        with pytest.raises(AssertionError, match="Some input info is missing"):
            chat.answer_sample(prompt, img_list, do_sample=False, max_new_tokens=2)


def test_precomputed_features_never_load_the_agent(tmp_path, samples, env, tiny_llm, data_dir):
    agent = create_au_agent(backend="rules", cache_dir=env["au_agent_cache_dir"])
    encoder = load_clip_text_encoder(env["au_clip_model"])
    track = read_openface_csv(samples / "openface" / "sample_00005.csv")
    written = compute_video_features(track, agent, encoder, FeatureSettings(frames=8))
    save_video_features(tmp_path / "features", written)
    root, cfg = patched(tmp_path, openface_dir=str(samples / "openface"), precomputed_dir=str(tmp_path / "features"))
    apply(cfg.inference, env)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = _inference_dataset(ag, cfg)
        vf = dataset._extract_au_features_realtime("sample_00005")
        np.testing.assert_array_equal(vf.features, written.features)
        assert not dataset.au_source.agent.loaded  # the file was enough: no model loaded
        dataset._extract_au_features_realtime("sample_00000")  # no file: computed, so now the agent loads
        assert dataset.au_source.agent.loaded


def test_mer_factory_descriptions(tmp_path, samples, env, tiny_llm, data_dir):
    root, cfg = patched(tmp_path, mer_factory_output=str(samples / "mer_factory"))
    assert cfg.datasets.mercaptionplus.use_au_agent is False
    apply(cfg.inference, env)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = _inference_dataset(ag, cfg)
        feature, mask = dataset.au_feature("sample_00002")
        path = samples / "mer_factory" / "sample_00002" / "sample_00002_au_analysis.json"
        data = load_json(path)
        records = list(mer_factory.read(path, data, "sample_00002"))
        encoder = load_clip_text_encoder(env["au_clip_model"])
        expected = features_from_descriptions([r.frame for r in records], [r.description.strip() for r in records],
                                              data["au_info"]["total_frames"], encoder, FeatureSettings(frames=8))
        assert feature.shape == (8, 512) and mask.tolist() == expected.mask.tolist()
        np.testing.assert_allclose(feature.numpy(), expected.features, atol=1e-3)


def test_missing_source_gives_a_masked_zero_and_one_warning(tmp_path, samples, env, tiny_llm, data_dir, caplog):
    root, cfg = patched(tmp_path, openface_dir=str(samples / "openface"))
    apply(cfg.inference, env)
    with imported(root, tiny_llm, data_dir) as ag, \
            caplog.at_level(logging.WARNING, logger="affectgpt_patch.features.source"):
        dataset = _inference_dataset(ag, cfg)
        for name in ("no_such_video", "another_missing_one"):
            video, _, audio, _ = _paths(data_dir, name)
            sample_data = dataset.read_frame_face_audio_text(video, None, audio, None)
            assert sample_data["au"].shape == (8, 512) and not sample_data["au"].any()
            assert not sample_data["au_mask"].any()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no_such_video" in warnings[0].getMessage()
    assert "masked zero AU feature" in warnings[0].getMessage()


def test_a_missing_sample_is_not_replaced_during_training(tmp_path, samples, env, tiny_llm, data_dir):
    openface = tmp_path / "openface"
    openface.mkdir()
    for name in NAMES[1:]:  # the first sample has no CSV
        (openface / f"{name}.csv").write_bytes((samples / "openface" / f"{name}.csv").read_bytes())
    root, cfg = patched(tmp_path, openface_dir=str(openface))
    ds_cfg = cfg.datasets.mercaptionplus
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = built_after_refusal(ag, ds_cfg, cfg, r"openface: 1 of 3 samples \(33.3%\) have no AU source "
                                                       r"\(au_max_missing: 0.05\), e.g. sample_00000",
                                      au_max_missing=0.5)
        item = dataset[0]
        assert "hello there" in dataset.tokenizer.decode(item["text_input"])
        assert not item["au_mask"].any() and not item["au"].any()
        assert dataset[1]["au_mask"].all()


# ---- the AU fork: the agent path inside its own AU code


def test_fork_uses_the_agent_path(tmp_path, samples, env, tiny_llm, data_dir):
    root, cfg = patched(tmp_path, variant="au_fork", layout="flat", openface_dir=str(samples / "openface"))
    ds_cfg = cfg.datasets.mercaptionplus
    ds_cfg.use_preextracted_features = False
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        dataset = train_split(ag, ds_cfg, cfg)
        assert isinstance(dataset, mixin.AUForkSourceMixin) and not isinstance(dataset, mixin.UpstreamAUDatasetMixin)
        item = dataset[NAMES.index("sample_00002")]
        np.testing.assert_array_equal(item["au"].numpy(), reference_features("sample_00002", samples, env).features)
        assert item["au_preextracted"] is True  # the fork's model accepts only "pre-extracted" AU features
        batch = dataset.collater([dataset[0], dataset[1]])
        assert batch["aus"].shape == (2, 8, 512) and batch["au_preextracted"] is True

        dataset.use_au_agent = False  # the fork's own sources are still there
        dataset.mer_factory_output = str(samples / "mer_factory")
        sample_data = dataset.read_frame_face_audio_text(None, None, None, None, sample_name="sample_00002")
        assert isinstance(sample_data["au"], dict) and sample_data["au_preextracted"] is False


def test_fork_refuses_what_its_own_model_would_break_on(tmp_path, samples, env, tiny_llm, data_dir, wide_clip):
    """The AU fork builds its AU layers for 512-d input and initialises a frozen projector randomly: both are
    refused when the dataset is built, naming the setting, instead of a matmul error or a silently different
    projector at inference."""
    root, cfg = patched(tmp_path, variant="au_fork", layout="flat", openface_dir=str(samples / "openface"))
    ds_cfg = cfg.datasets.mercaptionplus
    ds_cfg.use_preextracted_features = False
    apply(ds_cfg, env)
    with imported(root, tiny_llm, data_dir) as ag:
        builder = ag.registry.get_builder_class("mercaptionplus")
        wide = OmegaConf.merge(ds_cfg, {"au_clip_model": str(wide_clip)})
        wide_model = OmegaConf.merge(cfg.model, {"au_feature_dim": 768})
        with pytest.raises(AUAgentError, match="takes 512-d AU features .* features are 768-d"):
            builder(wide, wide_model).build_datasets()
        with pytest.raises(AUAgentError, match="frozen_au_proj: true .* set model.frozen_au_proj to false"):
            builder(ds_cfg, OmegaConf.merge(cfg.model, {"frozen_au_proj": True})).build_datasets()
        assert len(builder(ds_cfg, cfg.model).build_datasets()["train"]) == len(NAMES)


# ---- feature width, frozen branch and checkpoints through the patched model


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    """The tiny CLIP at ViT-L/14's width (768)."""
    from au_standins.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip768") / "tiny_clip_768.pt", embed_dim=768)


def test_768_d_clip_features_train(tmp_path, samples, env, tiny_llm, data_dir, wide_clip):
    root, cfg = patched(tmp_path, openface_dir=str(samples / "openface"))
    ds_cfg = cfg.datasets.mercaptionplus
    apply(ds_cfg, env)
    ds_cfg.au_clip_model = str(wide_clip)
    assert cfg.model.au_feature_dim == 512  # the generated config's default: ViT-B/32
    with imported(root, tiny_llm, data_dir) as ag:
        builder = ag.registry.get_builder_class("mercaptionplus")
        with pytest.raises(AUAgentError, match="gives 768-d features, the model's au_feature_dim is 512: set "
                                               "model.au_feature_dim to 768"):
            builder(ds_cfg, cfg.model).build_datasets()
        cfg.model.au_feature_dim = 768
        dataset = builder(ds_cfg, cfg.model).build_datasets()["train"]
        batch = dataset.collater([dataset[i] for i in range(len(NAMES))])
        assert batch["aus"].shape == (3, 8, 768)
        model = ag.registry.get_model_class("affectgpt").from_config(cfg.model)
        loss = model(batch)["loss"]
        loss.backward()
        assert torch.isfinite(loss) and model.au_branch.au_llama_proj.weight.grad.abs().sum() > 0


def _saved_like_affectgpt(model):
    """RunnerBase._save_checkpoint keeps only the parameters that require grad (and the buffers)."""
    trainable = {k: p.requires_grad for k, p in model.named_parameters()}
    return {k: v for k, v in model.state_dict().items() if trainable.get(k, True)}


def test_frozen_branch_and_checkpoints_of_other_au_configs(tmp_path, tiny_llm, data_dir):
    root, cfg = patched(tmp_path)
    with imported(root, tiny_llm, data_dir) as ag:
        build = ag.registry.get_model_class("affectgpt").from_config
        cfg.model.frozen_au_proj = True
        torch.manual_seed(1)
        trained = build(cfg.model)
        torch.save({"model": _saved_like_affectgpt(trained)}, tmp_path / "frozen.pth")
        cfg.model.ckpt = str(tmp_path / "frozen.pth")
        torch.manual_seed(2)
        inference = build(cfg.model)  # the checkpoint has no AU keys: the branch is rebuilt from au_init_seed
        for key, value in trained.au_branch.state_dict().items():
            assert torch.equal(inference.au_branch.state_dict()[key], value), key

        cfg.model.frozen_au_proj, cfg.model.ckpt, cfg.model.num_au_query_token = False, "", 3
        torch.save({"model": _saved_like_affectgpt(build(cfg.model))}, tmp_path / "three_tokens.pth")
        cfg.model.ckpt, cfg.model.num_au_query_token = str(tmp_path / "three_tokens.pth"), 1
        with pytest.raises(ValueError, match=r"au_branch.au_attention_mlp.weight has shape \[3, 512\], this "
                                             r"model's is \[1, 512\].*num_au_query_token"):
            build(cfg.model)
        cfg.model.au_fusion_type = "mean"
        with pytest.raises(ValueError, match="trained with au_fusion_type: attention"):
            build(cfg.model)
