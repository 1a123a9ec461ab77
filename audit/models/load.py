"""The one dispatch point between a model spec and the backend that runs it.

A :class:`~audit.models.served.ServedSpec` (``openai:URL[#NAME]`` or ``model: {provider: openai}``)
gets a :class:`~audit.models.served.ServedModel`; anything else (``builtin:NAME``, a model
directory, a ``.gguf`` file, a cached hub id) a local :class:`~audit.models.local.LanguageModel`.
This module sits above both backends, which never import each other.

Example:
    >>> load_model("builtin:micro").has_weights
    True
"""

from __future__ import annotations

from ..config import ModelSpec
from .interface import Model
from .served import ServedModel, ServedSpec, is_served_string, parse_served_string


def load_model(spec: ModelSpec | ServedSpec | str) -> Model:
    """The backend for a model spec: a served endpoint, or local weights (loaded once, cached builds)."""
    if is_served_string(spec):
        spec = parse_served_string(spec)
    if isinstance(spec, ServedSpec):
        return ServedModel.load(spec)
    from .local import LanguageModel  # torch and transformers load only when local weights are wanted

    return LanguageModel.load(spec)
