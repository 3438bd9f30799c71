"""The openai backend against a real `llamafactory-cli api` server on 127.0.0.1 (tiny model + adapter)."""
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import free_port, make_random_adapter

from affectgpt_patch.agent import create_au_agent
from au_core import contract
from au_core.errors import AUAgentError

INPUTS = ["AU01: 0.98", "AU04: 1.50, AU07: 2.20", "AU12: 2.00, AU25: 1.10", "AU45: 2.20", "AU09: 1.30, AU10: 1.90",
          contract.NEUTRAL_INPUT]


@pytest.fixture(scope="module")
def adapter(tiny_qwen2, tmp_path_factory):
    return make_random_adapter(tiny_qwen2, tmp_path_factory.mktemp("api") / "adapter", seed=3)


@pytest.fixture(scope="module")
def server(tiny_qwen2, adapter, tmp_path_factory):
    port = free_port()
    cfg = tmp_path_factory.mktemp("api") / "infer.yaml"
    cfg.write_text(f"model_name_or_path: {tiny_qwen2}\nadapter_name_or_path: {adapter}\ntemplate: qwen\n"
                   f"finetuning_type: lora\ninfer_backend: huggingface\ndefault_system: \"{contract.SYSTEM_PROMPT}\"\n")
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_MODEL_NAME": "tiny-au"}
    exe = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    log = open(cfg.parent / "server.log", "w")
    proc = subprocess.Popen([exe, "api", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((cfg.parent / "server.log").read_text()[-3000:])
        try:
            urllib.request.urlopen(base + "/models", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("the llamafactory api server did not start")
    yield base
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.mark.main_venv_only  # the server is LLaMA-Factory's
def test_same_texts_as_the_hf_backend(server, tiny_qwen2, adapter, tmp_path):
    common = dict(max_new_tokens=12, use_cache=False)
    hf = create_au_agent(str(adapter), backend="hf", **common)
    api = create_au_agent(str(adapter), backend="openai", api_base=server, concurrency=3, **common)
    assert api.backend.model == "tiny-au"  # the server's first model, found through GET /models
    assert api.fingerprint == hf.fingerprint  # an agent folder keys the cache by the adapter, whatever the backend
    assert api.describe_inputs(INPUTS) == hf.describe_inputs(INPUTS)


def test_unreachable_server_is_one_clear_error(tmp_path):
    agent = create_au_agent(backend="openai", api_base=f"http://127.0.0.1:{free_port()}/v1", api_model="x",
                            retries=1, timeout=2, cache_dir=str(tmp_path))
    with pytest.raises(AUAgentError, match="server unreachable after 2 tries"):
        agent.describe_inputs(["AU01: 1.00"])


def test_request_is_greedy_with_the_contract_messages():
    from affectgpt_patch.agent.config import agent_config
    from affectgpt_patch.agent.openai_backend import OpenAIBackend

    backend = OpenAIBackend(agent_config(backend="openai", api_base="http://127.0.0.1:1/v1", api_model="m"))
    body = backend.request_body("AU01: 1.00")
    assert body["messages"] == contract.chat_messages("AU01: 1.00")
    assert body["temperature"] == 0.0 and body["model"] == "m" and not body["stream"]
