"""The ``openai`` backend: any OpenAI-compatible chat server (``llamafactory-cli api``, ``vllm serve``).

It needs only the standard library, so AffectGPT's own environment can use an agent served from a separate,
newer environment. Requests run with bounded concurrency, a timeout and retries with backoff; the messages
come from the prompt contract, and the server applies the same ``qwen`` template as training.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

from au_core import contract
from au_core.errors import AUAgentError

from .config import AgentConfig

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: AgentConfig) -> None:
        assert config.api_base is not None  # agent_config refuses the openai backend without one
        self.config = config
        self.base = config.api_base.rstrip("/")
        self.model = config.api_model or self._first_model()

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        data = json.dumps(body).encode("utf-8") if body is not None else None
        delay = 1.0
        for attempt in range(self.config.retries + 1):
            req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:200]
                if e.code not in _RETRY_STATUS or attempt == self.config.retries:
                    raise AUAgentError(f"server answered HTTP {e.code}: {detail}", self.base + path) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.config.retries:
                    reason = getattr(e, "reason", e)
                    raise AUAgentError(f"server unreachable after {attempt + 1} tries ({reason})", self.base) from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _first_model(self) -> str:
        models = self._request("GET", "/models").get("data") or []
        if not models:
            raise AUAgentError("the server lists no model", self.base + "/models")
        return models[0]["id"]

    def request_body(self, input_str: str) -> Dict[str, Any]:
        body: Dict[str, Any] = {"model": self.model, "messages": contract.chat_messages(input_str),
                                "max_tokens": self.config.max_new_tokens, "stream": False}
        if self.config.do_sample:
            body.update(temperature=self.config.temperature, top_p=self.config.top_p, seed=self.config.seed)
        else:
            body.update(temperature=0.0, seed=self.config.seed)
        return body

    def _one(self, input_str: str) -> str:
        reply = self._request("POST", "/chat/completions", self.request_body(input_str))
        try:
            return (reply["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            raise AUAgentError(f"unexpected reply {str(reply)[:200]}", self.base + "/chat/completions") from None

    def generate(self, inputs: Sequence[str], batch_size: int) -> List[str]:
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(self._one, inputs))

    def close(self) -> None:
        pass
