"""``au-agent train``: a real LLaMA-Factory run on the tiny model, the best-checkpoint hand-off, the agent card,
resume and --overwrite, and the one-line refusals before launch."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import au_agent_cli
from au_core import contract
from au_core.agent_card import CARD_NAME, load_agent_card
from au_core.errors import AUAgentError
from llamafactory_configs.handoff import select_best_checkpoint
from llamafactory_configs.plan import LOG_FILE, RECIPE_FILE, plan_output

TINY = "tiny_cpu_lora_sft"


def train(dataset, base_model, out, *extra) -> int:
    return au_agent_cli.main(["-q", "train", "--recipe", TINY, "--dataset", str(dataset), "--base-model",
                              str(base_model), "--out", str(out), *map(str, extra)])


def state(out: Path) -> dict:
    return json.loads((out / "trainer_state.json").read_text())


def eval_losses(s: dict) -> dict:
    return {h["step"]: h["eval_loss"] for h in s["log_history"] if "eval_loss" in h}


def last_run_log(out: Path) -> str:
    return (out / LOG_FILE).read_text(errors="replace").rsplit("==== ", 1)[-1]


def test_checkpoint_best_is_the_lowest_eval_loss(tiny_adapter):
    out = Path(tiny_adapter)
    s = state(out)
    losses = eval_losses(s)
    assert sorted(losses) == [4, 8, 12] and s["global_step"] == 12
    best_name = Path(s["best_model_checkpoint"]).name
    assert best_name == f"checkpoint-{min(losses, key=losses.get)}"
    assert s["best_metric"] == min(losses.values())
    best = out / "checkpoint-best"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"):
        assert (best / name).is_file()
    assert not list(best.glob("optimizer.pt")) + list(best.glob("rng_state*")) + list(best.glob("checkpoint-*"))
    weights = "adapter_model.safetensors"
    assert (best / weights).read_bytes() == (out / best_name / weights).read_bytes()
    assert json.loads((best / "adapter_config.json").read_text())["r"] == 8


def test_agent_card_is_complete_and_loads_from_every_entry_point(tiny_adapter, sample_dataset, tiny_qwen2):
    out = Path(tiny_adapter)
    cards = [load_agent_card(p) for p in (out, out / "checkpoint-best", out / CARD_NAME,
                                          out / "checkpoint-best" / CARD_NAME)]
    assert len({c.adapter_dir for c in cards}) == 1 and cards[0].adapter_dir == str(out / "checkpoint-best")
    card = cards[0]
    s = state(out)
    assert card.base_model == str(tiny_qwen2) and card.template == "qwen"
    assert card.system_prompt == contract.SYSTEM_PROMPT
    assert card.contract_version == contract.CONTRACT_VERSION and card.contract == contract.describe()
    assert card.best_checkpoint == {"source": Path(s["best_model_checkpoint"]).name, "step": s["best_global_step"],
                                       "eval_loss": s["best_metric"]}
    train_sha1 = hashlib.sha1((sample_dataset / "train.json").read_bytes()).hexdigest()
    assert card.dataset["files"]["au_agent_train"]["sha1"] == train_sha1 and len(card.dataset["sha1"]) == 40
    assert card.dataset["files"]["au_agent_val"]["records"] > 0
    assert card.lora["rank"] == 8 and card.lora["alpha"] == 16 and "q_proj" in card.lora["target_modules"]
    assert card.metrics["global_step"] == 12 and card.metrics["eval"]["eval_loss"] > 0
    assert card.metrics["train"]["train_loss"] > 0 and len(card.metrics["eval_history"]) == 3
    assert {"python", "llamafactory", "transformers", "peft", "torch"} <= set(card.packages)
    assert card.recipe_name == TINY and card.recipe["output_dir"] == str(out)
    assert card.recipe == json.loads(json.dumps(card.recipe))  # plain JSON, what au_agent_recipe.yaml holds


def test_agent_card_refuses_another_contract(tiny_adapter, tmp_path):
    out = shutil.copytree(Path(tiny_adapter) / "checkpoint-best", tmp_path / "best")
    data = json.loads((out / CARD_NAME).read_text())
    (out / CARD_NAME).write_text(json.dumps({**data, "contract_version": "au-contract-0"}))
    with pytest.raises(AUAgentError, match="prompt contract 'au-contract-0'"):
        load_agent_card(out)
    assert load_agent_card(out, check_contract=False).contract_version == "au-contract-0"
    with pytest.raises(AUAgentError, match="no agent_card.json"):
        load_agent_card(tmp_path)


def test_second_run_resumes_and_overwrite_restarts(tiny_adapter, sample_dataset, tiny_qwen2, tmp_path):
    out = shutil.copytree(Path(tiny_adapter), tmp_path / "agent")
    first_losses = [h["loss"] for h in state(out)["log_history"] if "loss" in h]

    assert train(sample_dataset, tiny_qwen2, out, "max_steps=16") == 0
    log = last_run_log(out)
    assert "Resuming training from checkpoint" in log and "global step 12" in log
    s = state(out)
    assert s["global_step"] == 16 and sorted(eval_losses(s)) == [4, 8, 12, 16]
    assert [h["loss"] for h in s["log_history"] if "loss" in h][:12] == first_losses  # steps 1-12 kept, not redone
    assert load_agent_card(out).metrics["global_step"] == 16

    assert train(sample_dataset, tiny_qwen2, out, "--overwrite", "max_steps=4") == 0
    assert "Resuming" not in last_run_log(out)
    s = state(out)
    assert s["global_step"] == 4 and sorted(eval_losses(s)) == [4]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-best"]
    assert load_agent_card(out).best_checkpoint["source"] == "checkpoint-4"


# ------------------------------------------------------------------------------------- refusals before launch


def _drop_split(ds: Path) -> None:
    info = json.loads((ds / "dataset_info.json").read_text())
    del info["au_agent_val"]
    (ds / "dataset_info.json").write_text(json.dumps(info))


def _old_contract(ds: Path) -> None:
    (ds / "contract.json").write_text(json.dumps({**contract.describe(), "contract_version": "au-contract-0"}))


def _empty_val(ds: Path) -> None:
    (ds / "val.json").write_text("[]")


def _edit_records(ds: Path, key: str, value) -> None:
    records = json.loads((ds / "train.json").read_text())
    records[len(records) // 2][key] = value
    (ds / "train.json").write_text(json.dumps(records))


def _edited_contract(ds: Path) -> None:
    (ds / "contract.json").write_text(json.dumps({**contract.describe(), "system_prompt": "You are helpful."}))


DATASET_PROBLEMS = {
    "edited contract.json": (_edited_contract, "system_prompt differ from prompt contract"),
    "record system prompt": (lambda ds: _edit_records(ds, "system", "You are helpful."), "the system prompt differs"),
    "record instruction": (lambda ds: _edit_records(ds, "instruction", "Describe."), "the instruction differs"),
    "record input": (lambda ds: _edit_records(ds, "input", "AU12=2.0"), "is not a contract input string"),
    "record unknown AU": (lambda ds: _edit_records(ds, "input", "AU99: 2.00"), "is not a contract input string"),
    "train split not a list": (lambda ds: (ds / "train.json").write_text("{}"), "not a list of records"),
    "no dataset_info": (lambda ds: (ds / "dataset_info.json").unlink(), "no dataset_info.json"),
    "missing split": (_drop_split, "registers no split 'au_agent_val'"),
    "no contract": (lambda ds: (ds / "contract.json").unlink(), "no contract.json"),
    "old contract": (_old_contract, "prompt contract 'au-contract-0'"),
    "empty val split": (_empty_val, "split 'au_agent_val' is empty"),
    "missing data file": (lambda ds: (ds / "train.json").unlink(), "data file 'train.json' not found"),
}


def listing(path: Path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else None


def assert_refused(capsys, argv, expected: str, out: Path) -> None:
    """One line on stderr, exit status 1, and the output folder exactly as it was."""
    before = listing(out)
    rc = au_agent_cli.main(["-q", "train", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("au-agent train: error: ") and "\n" not in err, err
    assert expected in err, err
    assert listing(out) == before, "nothing may be written before validation passes"


@pytest.mark.parametrize("problem", DATASET_PROBLEMS)
def test_dataset_problems_are_refused(problem, sample_dataset, tiny_qwen2, tmp_path, capsys):
    break_it, expected = DATASET_PROBLEMS[problem]
    ds = shutil.copytree(sample_dataset, tmp_path / "ds")
    break_it(ds)
    out = tmp_path / "out"
    assert_refused(capsys, ["--recipe", TINY, "--dataset", ds, "--base-model", tiny_qwen2, "--out", out], expected, out)


def _not_a_run(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    return tmp_path / "out"


def _model_without_config(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    return tmp_path / "model"


@pytest.mark.parametrize("case", [
    "missing dataset", "missing model dir", "model dir without config", "hub id not cached offline",
    "output not a run", "overwrite not a run", "output with space", "output is the dataset", "bf16 on cpu",
    "renamed key", "path override", "unknown recipe", "inference recipe", "other system prompt", "bad override",
    "deepspeed not installed", "bitsandbytes not installed",
])
def test_problems_are_refused_in_one_line(case, sample_dataset, tiny_qwen2, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    ds, model, args, extra = sample_dataset, str(tiny_qwen2), [], []
    if case == "missing dataset":
        ds, expected = tmp_path / "nowhere", "dataset folder not found"
    elif case == "missing model dir":
        model, expected = str(tmp_path / "no-model"), "base model folder not found"
    elif case == "model dir without config":
        model, expected = str(_model_without_config(tmp_path)), "not a model folder (no config.json)"
    elif case == "hub id not cached offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        model, expected = "au-agent-tests/no-such-model", "not in the Hugging Face cache"
    elif case == "output not a run":
        out, expected = _not_a_run(tmp_path), "holds no checkpoint to resume from; pass --overwrite"
    elif case == "overwrite not a run":
        out, expected = _not_a_run(tmp_path), "refusing to --overwrite"
        extra = ["--overwrite"]
    elif case == "output with space":
        out, expected = tmp_path / "my agent", "whitespace"
    elif case == "output is the dataset":
        ds = shutil.copytree(sample_dataset, tmp_path / "ds")
        out, expected = ds, "must not be or contain the dataset folder"
    elif case == "bf16 on cpu":
        import torch

        if torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= (8, 0):
            pytest.skip("this machine has a bf16 GPU")
        extra, expected = ["bf16=true"], "bf16=true but "
    elif case == "renamed key":
        extra, expected = ["evaluation_strategy=steps"], "use eval_strategy"
    elif case == "path override":
        extra, expected = [f"output_dir={tmp_path / 'x'}"], "set output_dir with --out"
    elif case == "unknown recipe":
        args, expected = ["--recipe", "no_such_recipe"], "no recipe 'no_such_recipe'"
    elif case == "inference recipe":
        args, expected = ["--recipe", "qwen2.5_7b_merge"], "not a LoRA or full SFT training recipe"
    elif case == "other system prompt":
        extra, expected = ["default_system=You are a helpful assistant."], "default_system differs"
    elif case == "bad override":
        extra, expected = ["max_steps"], "is not key=value"
    else:
        package = case.split()[0]
        if importlib.util.find_spec(package) is not None:
            pytest.skip(f"{package} is installed")
        recipe = "qwen2.5_7b_lora_sft_ds_z2" if package == "deepspeed" else "qwen2.5_7b_qlora_sft"
        args, expected = ["--recipe", recipe], f"pip install {package}"
    argv = ["--recipe", TINY, *args, "--dataset", ds, "--base-model", model, "--out", out, *extra]
    assert_refused(capsys, argv, expected, out)


# ------------------------------------------------------------------------------------------- output policy


def test_output_plan(tmp_path, sample_dataset, tiny_qwen2):
    out = tmp_path / "out"
    recipe = {"output_dir": str(out), "dataset_dir": str(sample_dataset), "model_name_or_path": str(tiny_qwen2)}
    assert plan_output(recipe, overwrite=False) == ("fresh", None)
    out.mkdir()
    (out / RECIPE_FILE).write_text("x: 1\n")
    (out / LOG_FILE).write_text("crashed before the first checkpoint\n")
    assert plan_output(recipe, overwrite=False) == ("fresh", None)
    assert plan_output(recipe, overwrite=True) == ("overwrite", None)
    for step in (5, 10):
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-15").mkdir()  # incomplete: no trainer state
    assert plan_output(recipe, overwrite=False) == ("resume", out / "checkpoint-10")


def test_other_nodes_wait_for_node_0_and_delete_nothing(tmp_path, sample_dataset, tiny_qwen2, monkeypatch, capsys):
    """Node 1 of a multi-node --overwrite run neither plans nor deletes: it waits for node 0's ready marker."""
    import threading
    import time

    from llamafactory_configs.plan import READY_FILE, node_log_file, wait_for_main_node

    out = tmp_path / "out"
    out.mkdir()
    (out / RECIPE_FILE).write_text("x: 1\n")
    (out / "checkpoint-5").mkdir()
    (out / "checkpoint-5" / "trainer_state.json").write_text("{}")
    before = sorted(p.name for p in out.rglob("*"))
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("AU_AGENT_NODE_WAIT_S", "0.2")
    assert train(sample_dataset, tiny_qwen2, out, "--overwrite") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "node 0 did not prepare the output folder" in err[0] and READY_FILE in err[0]
    assert sorted(p.name for p in out.rglob("*")) == before

    started = time.time()
    writer = threading.Timer(0.3, lambda: (out / READY_FILE).write_text(json.dumps({"time": time.time()})))
    writer.start()
    wait_for_main_node(out, started, timeout=30, poll=0.05)  # returns once node 0 is ready
    writer.join()
    assert node_log_file(out, 0).name == LOG_FILE and node_log_file(out, 3).name == "train.node3.log"
    (out / "train.node1.log").write_text("node 1 crashed\n")
    shutil.rmtree(out / "checkpoint-5")
    recipe = {"output_dir": str(out), "dataset_dir": str(sample_dataset), "model_name_or_path": str(tiny_qwen2)}
    assert plan_output(recipe, overwrite=False) == ("fresh", None)  # node logs and the marker are restartable


def test_best_checkpoint_selection(tmp_path):
    out = tmp_path / "run"
    for step in (4, 8, 12):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    history = [{"step": 4, "eval_loss": 2.0}, {"step": 8, "eval_loss": 1.5}, {"step": 12, "eval_loss": 1.7},
               {"step": 12, "eval_loss": 1.5}]  # the last: a final evaluation of the reloaded best model
    recorded = {"best_model_checkpoint": "/elsewhere/run/checkpoint-8", "log_history": history}
    assert select_best_checkpoint(out, recorded) == (out / "checkpoint-8", 8, 1.5)
    assert select_best_checkpoint(out, {"log_history": history}) == (out / "checkpoint-8", 8, 1.5)
    shutil.rmtree(out / "checkpoint-8")
    assert select_best_checkpoint(out, recorded) == (out / "checkpoint-12", 12, 1.7)
    assert select_best_checkpoint(out, {"log_history": [], "global_step": 12}) == (out, 12, None)


def test_test_agent_describes_the_builtin_and_user_cases(tiny_adapter, tmp_path, capsys):
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"Polite smile": {"AU12_r": 1.6, "AU06_r": 0.4}}))
    rc = au_agent_cli.main(["-q", "test-agent", "--agent", str(tiny_adapter), "--cases", str(cases),
                            "--device", "cpu", "--no-cache", "--max-new-tokens", "12"])
    report = capsys.readouterr().out
    assert rc == 0
    assert report.count("Test Case ") == report.count("Generated Description:\n  ") == 9
    assert "Test Case 2: Happiness\nAU Values: {'AU06': 2.1, 'AU12': 2.85, 'AU25': 1.2}" in report
    assert "Test Case 9: Polite smile\nAU Values: {'AU12': 1.6, 'AU06': 0.4}\nModel input: AU12: 1.60" in report
    assert f"Generated Description:\n  {contract.NEUTRAL_DESCRIPTION}" in report  # Neutral: no model call


def test_user_cases_from_json_and_csv(tmp_path, samples):
    from affectgpt_patch.quality.facs_cases import load_cases

    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"name": "smile", "au_values": {"AU12": 2}}, {"AU04_r": 1.5, "AU04_c": 1}]))
    assert [(c.name, c.au_values) for c in load_cases(listed)] == [("smile", {"AU12": 2.0}), ("Case 2", {"AU04": 1.5})]
    table = tmp_path / "cases.csv"
    table.write_text("name,AU06,AU12\nsmile,1.5,2.5\n")
    assert [(c.name, c.au_values) for c in load_cases(table)] == [("smile", {"AU06": 1.5, "AU12": 2.5})]
    openface = load_cases(samples / "openface" / "sample_00000.csv")  # an OpenFace CSV as it is
    assert openface[0].name == "frame 1" and len(openface[0].au_values) == 17
    for bad, message in (({"x": {"AU99": 1}}, "unknown AU 'AU99'"), ({"x": {"AU12": "high"}}, "non-numeric"),
                         ({"x": {"AU12": 1, "AU12_r": 2}}, "gives AU12 twice"), ({"x": {"frame": 3}}, "no AU values")):
        listed.write_text(json.dumps(bad))
        with pytest.raises(AUAgentError, match=message):
            load_cases(listed)
