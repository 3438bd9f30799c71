"""``au-agent patch-affectgpt`` on fixture checkouts: both layouts, both variants, idempotence, all-or-nothing
writes, byte-identical revert, and refusals that name the file and what was expected. No torch here."""
import json

import pytest
from fixtures.affectgpt import LAYOUTS, VARIANTS, code_root, digest, make_checkout
from omegaconf import OmegaConf

import au_agent_cli
from affectgpt_patch.patcher import ConfigOptions, apply_patch, check_patch, revert_patch, transaction
from affectgpt_patch.patcher.configs import INFERENCE_CONFIG, SEED_MODE, TRAIN_CONFIG
from affectgpt_patch.patcher.edit import APPLIED, PENDING
from au_core.errors import AUAgentError

CASES = [(variant, layout) for variant in VARIANTS for layout in LAYOUTS]
VARIANT_NAME = {"upstream": "upstream", "au_fork": "au-fork"}


@pytest.fixture(params=CASES, ids=[f"{variant}-{layout}" for variant, layout in CASES])
def checkout(request, tmp_path):
    variant, layout = request.param
    return make_checkout(tmp_path / "repo", variant, layout), VARIANT_NAME[variant], layout


def compiles(root, rels):
    for rel in rels:
        if rel.endswith(".py"):
            compile((root / rel).read_bytes(), str(root / rel), "exec")


def test_detects_layout_and_variant(checkout):
    root, variant, layout = checkout
    report = check_patch(root)
    assert report.checkout.variant == variant
    assert (report.checkout.code_root == root / "AffectGPT") == (layout == "nested")
    assert not report.complete and any(s.state == PENDING for s in report.states)
    if variant == "au-fork":  # its token, tokenizer and img_list['au'] are already there
        applied = {s.what for s in report.states if s.state == APPLIED}
        assert "add <AUHere> to the tokenizer's special tokens" in applied


def test_apply_compiles_is_idempotent_and_reverts_byte_for_byte(checkout):
    root, variant, _ = checkout
    before = digest(root)
    report = apply_patch(root)
    assert report.complete and report.changed
    compiles(root, report.changed)
    manifest = json.loads((root / ".au_agent_patch" / "manifest.json").read_text())
    assert manifest["variant"] == variant and set(report.changed) <= set(manifest["files"])
    patched = digest(root)

    again = apply_patch(root)
    assert again.changed == [] and digest(root) == patched
    assert check_patch(root).complete

    restored = revert_patch(root)
    assert set(restored) == set(manifest["files"])
    assert digest(root) == before  # every file byte for byte, the state folder gone


def test_upstream_gets_the_whole_modality(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "nested")
    apply_patch(root)
    code = code_root(root)
    assert "DEFAULT_AU_PATCH_TOKEN = '<AUHere>'" in (code / "config.py").read_text()
    assert "add_tokens([config.DEFAULT_AU_PATCH_TOKEN]" in (code / "my_affectgpt/models/tokenizer.py").read_text()
    dataset = (code / "my_affectgpt/datasets/datasets/base_dataset.py").read_text()
    assert "class BaseDataset(AUDatasetMixin, _BaseDatasetWithoutAU):" in dataset
    assert dataset.index("class BaseDataset(AUDatasetMixin") < dataset.index("class ConcatDataset")
    model = (code / "my_affectgpt/models/affectgpt.py").read_text()
    assert "class AffectGPT(AUBranchMixin, Blip2Base):" in model
    assert "model.init_au_branch(**au_branch_settings(cfg))" in model
    assert "(self.AU_PATCH_TOKEN_ID, self.num_au_query_token, au_llms)" in model
    assert model.index("init_au_branch") < model.index("load_state_dict")  # before checkpoints load
    chat = (code / "my_affectgpt/conversation/conversation_video.py").read_text()
    assert "class Chat(AUChatMixin):" in chat and "img_list.get('au')" in chat
    for script in ("inference_hybird.py", "inference_sample.py"):
        text = (code / script).read_text()
        assert "dataset_cls.configure_au(inference_cfg, *datasets_cfg.values(), model_cfg)" in text
        assert "img_list['au'] = chat.postprocess_au(sample_data)[1]" in text
    for added in ("my_affectgpt/models/au_branch.py", "my_affectgpt/models/au_agent.py"):
        assert (code / added).is_file()


def test_fork_gets_the_agent_path_in_its_own_au_code(tmp_path):
    root = make_checkout(tmp_path / "repo", "au_fork", "flat")
    before = digest(root)
    report = apply_patch(root)
    changed = set(report.changed)
    assert "my_affectgpt/models/affectgpt.py" not in changed  # its model and Chat already handle AU
    assert "my_affectgpt/conversation/conversation_video.py" not in changed
    assert not (root / "my_affectgpt/models/au_branch.py").exists()
    assert digest(root)["my_affectgpt/models/au_agent.py"] == before["my_affectgpt/models/au_agent.py"]
    dataset = (root / "my_affectgpt/datasets/datasets/base_dataset.py").read_text()
    assert "class BaseDataset(AUSourceMixin, _BaseDatasetWithoutAU):" in dataset
    head = dataset.index("if getattr(self, 'use_au_agent', False):  # au-agent: OpenFace")
    assert dataset.index("elif use_preextracted and preextracted_root and sample_name:") > head
    assert "sample_data['au_preextracted'] = True" in dataset
    assert "dataset_cls.configure_au(" in (root / "inference_hybird.py").read_text()
    assert "img_list['au'] = chat.postprocess_au(sample_data)[1]" in (root / "inference_sample.py").read_text()


def test_generated_configs(tmp_path, samples):
    root = make_checkout(tmp_path / "repo", "upstream", "nested")
    options = ConfigOptions(openface_dir=str(samples / "openface"), precomputed_dir="features",
                            face_or_frame="multiface_audio_face_au_text")
    report = apply_patch(root, options)
    assert report.base_config.endswith("emercoarse_highlevelfilter4_outputhybird_bestsetup_bestfusion_lz.yaml")
    train = OmegaConf.load(code_root(root) / TRAIN_CONFIG)
    assert set(train) == {"model", "datasets", "run", "inference"}
    entry = train.datasets.mercaptionplus
    assert entry.face_or_frame == "multiface_audio_face_au_text" and entry.label_type == "hybird"
    assert entry.use_au_agent is True and entry.au_agent_use_lora is True
    assert entry.openface_output_dir == str(samples / "openface")
    assert entry.au_precomputed_dir.endswith("/features") and entry.au_precomputed_dir.startswith("/")
    for key in ("au_agent_base_model", "au_agent_lora_weights", "mer_factory_output"):
        assert key in entry
    model = train.model
    assert (model.num_au_query_token, model.au_fusion_type, model.frozen_au_proj) == (1, "attention", False)
    assert train.model.vis_processor.train.n_frms == 8  # the rest of the released config is kept
    infer = OmegaConf.load(code_root(root) / INFERENCE_CONFIG)
    assert infer.inference.face_or_frame == entry.face_or_frame and infer.inference.use_au_agent is True
    assert infer.inference.openface_output_dir == entry.openface_output_dir


def test_fork_configs_keep_its_values(tmp_path):
    root = make_checkout(tmp_path / "repo", "au_fork", "nested")
    report = apply_patch(root)
    assert report.base_config.endswith("_face_frame_au.yaml")
    entry = OmegaConf.load(code_root(root) / TRAIN_CONFIG).datasets.mercaptionplus
    assert entry.face_or_frame == SEED_MODE and entry.use_au_agent is True
    assert entry.mer_factory_output == "/data/MER-Factory/output"  # a null placeholder never replaces a value


def test_dry_run_writes_nothing(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    before = digest(root)
    report = apply_patch(root, dry_run=True)
    assert digest(root) == before and not (root / ".au_agent_patch").exists()
    assert "+class BaseDataset(AUDatasetMixin, _BaseDatasetWithoutAU):" in report.diff
    assert f"+++ b/{TRAIN_CONFIG}" in report.diff


@pytest.mark.parametrize("fail_at", [6, -2], ids=["before-the-journal", "last-checkout-file"])
def test_failure_part_way_leaves_the_checkout_untouched(tmp_path, monkeypatch, fail_at):
    root = make_checkout(tmp_path / "repo", "upstream", "nested")
    before = digest(root)
    calls = []
    real_write = transaction._write
    if fail_at < 0:  # counted from the end (the manifest is the last write)
        counting = make_checkout(tmp_path / "count", "upstream", "nested")
        monkeypatch.setattr(transaction, "_write", lambda *a: calls.append(a[0]) or real_write(*a))
        apply_patch(counting)
        fail_at += len(calls) + 1
        assert ".au_agent_patch" not in calls[fail_at - 1].parts
        calls.clear()

    def flaky_write(path, data, mode=None):
        calls.append(path)
        if len(calls) == fail_at:
            raise OSError("disk full")
        real_write(path, data, mode)

    monkeypatch.setattr(transaction, "_write", flaky_write)
    with pytest.raises(OSError, match="disk full"):
        apply_patch(root)
    assert len(calls) == fail_at and digest(root) == before and not (root / ".au_agent_patch").exists()

    monkeypatch.setattr(transaction, "_write", real_write)  # and a later run succeeds
    assert apply_patch(root).complete


def test_revert_refuses_files_changed_since(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    before = digest(root)
    apply_patch(root)
    path = root / "config.py"
    patched = path.read_bytes()
    path.write_bytes(patched + b"# my change\n")
    with pytest.raises(AUAgentError, match=r"changed since it was patched: config\.py"):
        revert_patch(root)
    path.write_bytes(patched)
    revert_patch(root)
    assert digest(root) == before


def test_crlf_and_non_ascii_survive(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    path = root / "config.py"
    path.write_bytes(("# 全局路径 (global paths)\r\n" + path.read_text().replace("\n", "\r\n")).encode("utf-8"))
    before = digest(root)
    apply_patch(root)
    text = path.read_bytes().decode("utf-8")
    assert "DEFAULT_AU_PATCH_TOKEN = '<AUHere>'  # au-agent: the AU modality\r\n" in text
    assert "\n" not in text.replace("\r\n", "")
    revert_patch(root)
    assert digest(root) == before


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("rel, old, new, message", [
    ("my_affectgpt/models/affectgpt.py", "for (patch_token_id, query_token_number, embeds) in [",
     "for (patch_token_id, query_token_number, embeds) in splice_list or [",
     r"my_affectgpt/models/affectgpt\.py: cannot splice AU tokens in forward\(\): expected AffectGPT\.forward\(\) "
     r"to loop over a list of \(patch_token_id, query_token_number, embeds\) tuples"),
    ("config.py", "_PATCH_TOKEN", "_PLACEHOLDER",
     r"config\.py: cannot define DEFAULT_AU_PATCH_TOKEN.*expected the special-token constants"),
    ("my_affectgpt/conversation/conversation_video.py", "class Chat:", "class Conversation:",
     r"conversation_video\.py: cannot .*expected a module-level class Chat"),
    ("inference_sample.py", "dataset_cls.n_frms = ", "n_frms = ",
     r"inference_sample\.py: cannot configure the dataset's AU settings: expected `dataset_cls\.n_frms = \.\.\.`"),
    ("my_affectgpt/datasets/datasets/base_dataset.py", "    def collater(self, instances):",
     "    def collate(self, instances):",
     r"base_dataset\.py: cannot put AUDatasetMixin.*expected BaseDataset to define collater"),
])
def test_refuses_a_checkout_that_differs(tmp_path, rel, old, new, message):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    _edit(root / rel, old, new)
    before = digest(root)
    with pytest.raises(AUAgentError, match=message):
        apply_patch(root)
    assert digest(root) == before  # nothing written, not even the files before the one that failed
    states = {s.state for s in check_patch(root).states if s.path == rel}
    assert "conflict" in states or rel == "my_affectgpt/conversation/conversation_video.py"


def test_refuses_partial_au_code_and_non_checkouts(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    _edit(root / "config.py", "IGNORE_INDEX", "DEFAULT_AU_PATCH_TOKEN = '<AUHere>'\nIGNORE_INDEX")
    with pytest.raises(AUAgentError, match=r"partial AU code \(has: <AUHere> in config\.py; lacks: AU sources"):
        apply_patch(root)
    with pytest.raises(AUAgentError, match=r"not an AffectGPT checkout: expected my_affectgpt/datasets/"):
        check_patch(tmp_path)
    with pytest.raises(AUAgentError, match="not patched by au-agent"):
        revert_patch(make_checkout(tmp_path / "other", "upstream", "flat"))


def test_refuses_unknown_modes_and_foreign_files(tmp_path):
    root = make_checkout(tmp_path / "repo", "upstream", "flat")
    with pytest.raises(AUAgentError, match="has no 'au' part"):
        apply_patch(root, ConfigOptions(face_or_frame="multiface_audio_face_text"))
    with pytest.raises(AUAgentError, match=r"get_needed_data does not know 'image_text'"):
        apply_patch(root, ConfigOptions(face_or_frame="image_au_text"))
    (root / TRAIN_CONFIG).write_text("model: {}\n")
    with pytest.raises(AUAgentError, match="exists and was not written by au-agent"):
        apply_patch(root)
    assert not (root / ".au_agent_patch").exists()


def test_cli(tmp_path, capsys):
    root = make_checkout(tmp_path / "repo", "upstream", "nested")
    before = digest(root)
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root), "--check"]) == 1
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root), "--dry-run"]) == 0
    assert digest(root) == before
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root)]) == 0
    out = capsys.readouterr().out
    assert "code under AffectGPT/; upstream AffectGPT without AU" in out
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root), "--check"]) == 0
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root), "--revert"]) == 0
    assert digest(root) == before
    assert au_agent_cli.main(["-q", "patch-affectgpt", str(root), "--revert"]) == 1
    assert "nothing to revert" in capsys.readouterr().err
