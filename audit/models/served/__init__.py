"""Models behind an OpenAI-compatible server (vLLM, llama.cpp's server, TGI, Ollama).

A :class:`ServedSpec` (``model: {provider: openai, ...}`` or ``openai:URL[#NAME]``) names the
endpoint; :class:`ServedModel` implements :class:`audit.models.interface.Model` over it. This package
never imports the local model: :func:`audit.models.load.load_model` picks one of the two.

Example:
    >>> model_spec_from("openai:http://127.0.0.1:8000/v1#m").name
    'm'
"""

from __future__ import annotations

from .client import Client, ServedBadValue, ServedError, ServedRequestError
from .model import ServedModel, ServedUnsupported
from .spec import ServedSpec, is_served_string, model_spec_from, override_model, parse_served_string, redact_url

__all__ = ["Client", "ServedBadValue", "ServedError", "ServedRequestError", "ServedModel", "ServedUnsupported", "ServedSpec",
           "is_served_string", "parse_served_string", "redact_url", "model_spec_from", "override_model"]
