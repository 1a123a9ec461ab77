"""Which served model to audit: an OpenAI-compatible endpoint (vLLM, llama.cpp's server, TGI, Ollama).

A suite names it as a mapping (``model: {provider: openai, base_url: ..., name: ..., api_key_env: ...}``)
or, like any model, as one string (``--model openai:http://127.0.0.1:8000/v1#NAME``). The API key
is never part of the spec: only the NAME of the environment variable that holds it is, so suites,
results, caches and error messages can carry the spec without carrying the secret.

Example:
    >>> parse_served_string("openai:http://127.0.0.1:8000/v1#smollm2").name
    'smollm2'
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...config import ConfigError, ModelSpec, from_mapping
from ...errors import AuditError

# String forms: chat completions (the server applies its chat template) or raw completions.
PREFIXES = {"openai:": "chat", "openai-completions:": "completions"}
PROVIDERS = ("openai",)


def is_served_string(spec: object) -> bool:
    """Whether a model string names a served model (``openai:URL`` / ``openai-completions:URL``)."""
    return isinstance(spec, str) and spec.startswith(tuple(PREFIXES))


@dataclass
class ServedSpec:
    """An OpenAI-compatible endpoint and how to talk to it."""

    provider: str = "openai"         # the wire protocol; OpenAI-compatible is what vLLM/llama.cpp/TGI/Ollama speak
    base_url: str = ""               # e.g. http://127.0.0.1:8000/v1 (no credentials in it: use api_key_env)
    name: str | None = None          # the served model id; None: the only model GET /models lists
    api: str = "chat"                # chat: /chat/completions, the server's chat template; completions: raw prompts
    api_key_env: str | None = None   # NAME of the environment variable holding the key (never the key itself)
    concurrency: int = 4             # requests in flight at once
    timeout: float = 120.0           # seconds per request, a deadline for the whole of it (connect, headers, body)
    max_response_mb: float = 8.0     # largest answer body accepted (MiB); a bigger one is a one-line error, not retried
    max_attempts: int = 5            # tries per request on 429/5xx/connection errors/timeouts/garbage, then a one-line error
    backoff: float = 0.5             # first retry delay in seconds; doubles each try, full jitter, capped by backoff_max
    backoff_max: float = 20.0
    system_prompt: str | None = None  # a system turn before every prompt (chat api)
    # A local tokenizer directory with the same chat template as the server (optional). It lets
    # perplexity/likelihood sections render chat text for /completions echo+logprobs, and gives
    # robustness a token count; without it those uses say what is missing.
    tokenizer: str | None = None
    # Send OpenAI's `n` for several samples of one prompt in one request (fewer requests; the
    # server's draws then depend on n). Default: one request per sample with its own seed.
    n_per_request: bool = False
    chat_template: str = "server"    # informational: chat templates are the server's

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.api not in ("chat", "completions"):
            raise ValueError(f"api must be chat or completions, got {self.api!r}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {redact_url(self.base_url)!r}")
        if parts.username or parts.password or parts.query:
            # Credentials in a URL end up in logs and results; the key belongs in an env var.
            raise ValueError(f"base_url must not carry credentials or a query ({redact_url(self.base_url)}); "
                             f"put the API key in an environment variable and name it in api_key_env")
        self.base_url = self.base_url.rstrip("/")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if not self.max_response_mb > 0:
            raise ValueError("max_response_mb must be > 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError("backoff and backoff_max must be >= 0")
        if self.api_key_env is not None and (not self.api_key_env or not self.api_key_env.replace("_", "").isalnum()):
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, _), not the key")

    @property
    def path(self) -> str:
        """The spec as one display string (what ``audit validate`` and logs print)."""
        prefix = "openai:" if self.api == "chat" else "openai-completions:"
        return f"{prefix}{self.base_url}" + (f"#{self.name}" if self.name else "")

    def api_key(self) -> str | None:
        """The key from the named environment variable (None when no variable is named)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise AuditError(f"model.api_key_env: environment variable {self.api_key_env} is not set (it should hold the API key)")
        return key


def parse_served_string(spec: str, base: ServedSpec | None = None) -> ServedSpec:
    """``openai:URL[#NAME]`` -> :class:`ServedSpec`; other fields come from ``base`` (a suite's served model)."""
    for prefix, api in PREFIXES.items():
        if spec.startswith(prefix):
            url, _, name = spec[len(prefix):].partition("#")
            fields = dataclasses.asdict(base) if base is not None else {}
            fields.update(base_url=url, name=name or None, api=api)
            return ServedSpec(**fields)
    raise ValueError(f"not a served model spec: {spec!r} (expected openai:URL[#NAME])")


def redact_url(url: str) -> str:
    """The URL without user info and query (where credentials hide), for messages and results."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
        return f"{p.scheme}://{host}{p.path}" if p.scheme else "<url>"
    except ValueError:
        return "<url>"


def model_spec_from(raw: Any, where: str = "<suite>: model") -> ServedSpec | None:
    """A suite's ``model:`` value -> ServedSpec when it names a served model, else None (a local model)."""
    if is_served_string(raw):
        try:
            return parse_served_string(raw)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if isinstance(raw, dict) and "provider" in raw:
        return from_mapping(ServedSpec, raw, where)
    return None


def override_model(spec: ModelSpec | ServedSpec, model: str) -> ModelSpec | ServedSpec:
    """The suite's model spec with ``--model`` applied (a served string keeps the suite's served options)."""
    if is_served_string(model):
        try:
            return parse_served_string(model, base=spec if isinstance(spec, ServedSpec) else None)
        except ValueError as e:
            raise ConfigError(f"--model: {e}") from None
    if isinstance(spec, ServedSpec):
        return ModelSpec(path=model)
    return dataclasses.replace(spec, path=model)
