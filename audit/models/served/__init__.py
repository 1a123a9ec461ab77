"""Models behind an OpenAI-compatible server (vLLM, llama.cpp's server, TGI, Ollama).

The one dispatch point between a model spec and the adapter that runs it: :func:`load_model` gives
a :class:`ServedModel` for a :class:`ServedSpec` (``model: {provider: openai, ...}`` or
``openai:URL[#NAME]``) and a local :class:`audit.models.local.LanguageModel` for anything else.

Example:
    >>> model_spec_from("openai:http://127.0.0.1:8000/v1#m").name
    'm'
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .client import Client, ServedError, ServedRequestError
from .model import ServedModel, ServedUnsupported
from .spec import ServedSpec, is_served_string, parse_served_string, redact_url

__all__ = ["Client", "ServedError", "ServedRequestError", "ServedModel", "ServedUnsupported", "ServedSpec",
           "is_served_string", "parse_served_string", "redact_url", "load_model", "model_spec_from", "override_model"]


def model_spec_from(raw: Any, where: str = "<suite>: model"):
    """A suite's ``model:`` value -> ServedSpec when it names a served model, else None (a local model)."""
    from ...config import ConfigError, from_mapping

    if is_served_string(raw):
        try:
            return parse_served_string(raw)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if isinstance(raw, dict) and "provider" in raw:
        return from_mapping(ServedSpec, raw, where)
    return None


def override_model(spec, model: str):
    """The suite's model spec with ``--model`` applied (a served string keeps the suite's served options)."""
    if is_served_string(model):
        try:
            return parse_served_string(model, base=spec if isinstance(spec, ServedSpec) else None)
        except ValueError as e:
            from ...config import ConfigError

            raise ConfigError(f"--model: {e}") from None
    if isinstance(spec, ServedSpec):
        from ...config import ModelSpec

        return ModelSpec(path=model)
    return dataclasses.replace(spec, path=model)


def load_model(spec):
    """The adapter for a model spec: served endpoint or local weights."""
    if isinstance(spec, ServedSpec):
        return ServedModel.load(spec)
    from ..local import LanguageModel

    return LanguageModel.load(spec)
