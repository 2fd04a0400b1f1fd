"""The ``openai`` rule authoring backend (hook ``falconet_rule_authoring_backends``).

Configuration (``falconet.yaml``, section ``plugins.llm``; ``-o plugins.llm.model=x`` works),
declared once in :data:`SCHEMA`::

    plugins:
      llm:
        base_url: null          # default $OPENAI_BASE_URL, else https://api.openai.com/v1;
                                # Ollama: http://127.0.0.1:11434/v1, vLLM/llama.cpp: http://127.0.0.1:8000/v1
        model: null             # default $FALCONET_LLM_MODEL, else gpt-4o-mini
        api_key_env: OPENAI_API_KEY   # the environment variable holding the key (never the key)
        timeout: 120            # seconds per request
        temperature: 0.0

Local servers accept any key: when the variable is unset and ``base_url`` is not OpenAI's, a
placeholder is sent. The key is never logged.
"""

from __future__ import annotations

import os
from typing import Any

from falconet import plugin_config as c
from falconet.api import ConfigSchema, EngineContext, Setting, hookimpl

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"

SCHEMA = ConfigSchema({
    "base_url": Setting(c.optional(c.string()), None,
                        "chat completions base URL (default $OPENAI_BASE_URL, else OpenAI's)"),
    "model": Setting(c.optional(c.string()), None,
                     "model name (default $FALCONET_LLM_MODEL, else gpt-4o-mini)"),
    "api_key_env": Setting(c.string(), "OPENAI_API_KEY",
                           "the environment variable that holds the API key"),
    "timeout": Setting(c.number(0), 120.0, "seconds per request"),
    "temperature": Setting(c.number(0), 0.0, "sampling temperature"),
})


class OpenAIBackend:
    """Chat completions through the official ``openai`` client."""

    name = "openai"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.base_url = cfg.get("base_url") or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        self.model = cfg.get("model") or os.environ.get("FALCONET_LLM_MODEL") or DEFAULT_MODEL
        self.key_env = cfg.get("api_key_env") or "OPENAI_API_KEY"
        self.timeout = float(cfg.get("timeout", 120))
        self.temperature = float(cfg.get("temperature", 0.0))

    def _client(self) -> Any:
        try:
            import openai  # noqa: PLC0415 - an optional extra
        except ImportError:
            raise RuntimeError("the openai client is not installed: pip install "
                               "'falconet-llm[openai]'") from None
        key = os.environ.get(self.key_env)
        if not key:
            if self.base_url.rstrip("/") == OPENAI_URL:
                raise RuntimeError(f"no API key: set ${self.key_env} (or plugins.llm.base_url "
                                   "for a local server)")
            key = "unused"          # Ollama, vLLM, llama.cpp accept any key
        return openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout,
                             max_retries=1)

    def propose(self, messages: list[dict[str, str]]) -> str:
        client = self._client()
        import openai  # noqa: PLC0415

        try:
            r = client.chat.completions.create(model=self.model, messages=messages,
                                               temperature=self.temperature)
        except openai.APIError as e:
            # the message names the server's answer, never the key
            raise RuntimeError(f"{self.base_url}: {type(e).__name__}: "
                               f"{getattr(e, 'message', str(e))[:300]}") from None
        if not r.choices or r.choices[0].message.content is None:
            raise RuntimeError(f"{self.base_url}: an answer without content")
        return r.choices[0].message.content


class LlmPlugin:
    """One engine's backend settings."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = SCHEMA.defaults()

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: EngineContext) -> None:
        self.config = config

    @hookimpl
    def falconet_rule_authoring_backends(self, engine: EngineContext) -> list[Any]:
        return [OpenAIBackend(self.config)]


FALCONET_PLUGIN = LlmPlugin
