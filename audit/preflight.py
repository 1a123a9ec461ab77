"""Everything about a run that can be known without loading weights, checked up front.

``audit validate`` and ``audit run`` share these checks, so validate says "ok" only when run would
get as far as loading the model: the data file reads and validates, a ``builtin:`` name exists, a
local model directory has a config, weights and tokenizer files, and ``max_new_tokens`` fits the
context window its ``config.json`` declares. Each failure is one line naming the file or field.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
    >>> try:
    ...     check_model_dir(d)
    ... except PreflightError as e:
    ...     print("has no weights file" in str(e))
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import AuditError

BUILTIN_NAMES = ("tiny", "micro", "smollm2")

# What from_pretrained reads: one of these weight files (or a shard index) and one tokenizer file.
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
_TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
              "tokenizer_config.json")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


class PreflightError(AuditError):
    """Something a run needs is missing or invalid; found before any weights load."""


def check_model_dir(path: str | os.PathLike, *, trust_remote_code: bool = False) -> Path:
    """A local model directory holds ``config.json``, a weights file and tokenizer files."""
    d = Path(path)
    if not (d / "config.json").is_file():
        raise PreflightError(f"{d}: model directory has no config.json (expected a Hugging Face model directory saved "
                             f"with save_pretrained: config.json, weights, tokenizer files)")
    if trust_remote_code:
        return d   # the repo's own code decides what it reads
    names = {p.name for p in d.iterdir()}
    if not names.intersection(_WEIGHTS) and not any(n.endswith(".safetensors") for n in names):
        raise PreflightError(f"{d}: model directory has no weights file (one of {', '.join(_WEIGHTS[:4])})")
    if not names.intersection(_TOKENIZER):
        raise PreflightError(f"{d}: model directory has no tokenizer files (one of {', '.join(_TOKENIZER)}); "
                             f"save the tokenizer with tokenizer.save_pretrained(DIR)")
    return d


def context_length(model_dir: Path) -> int | None:
    """The context window ``config.json`` declares, or None when it says none or cannot be read."""
    try:
        cfg: Any = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    for key in _CONTEXT_KEYS:
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def check_model_spec(spec, *, where: str = "model") -> Path | None:
    """The model a :class:`~audit.config.ModelSpec` names, as far as knowable without loading it.

    Returns the local model directory when there is one already on disk (else None: a builtin
    not built yet, a ``.gguf`` file, or a hub id looked up in the cache at load time).
    """
    path = os.path.expanduser(spec.path)
    if path.startswith("builtin:"):
        name = path[len("builtin:"):]
        if name not in BUILTIN_NAMES:
            from .registry import did_you_mean

            raise PreflightError(f"{where}.path: unknown builtin model {spec.path!r}{did_you_mean(name, BUILTIN_NAMES)}; "
                                 f"available: {', '.join('builtin:' + n for n in BUILTIN_NAMES)}")
        return None
    p = Path(path)
    if path.lower().endswith(".gguf"):
        if not p.is_file():
            raise PreflightError(f"{where}.path: GGUF file {path!r} not found")
        return None
    if p.is_dir():
        return check_model_dir(p, trust_remote_code=spec.trust_remote_code)
    if p.exists():
        raise PreflightError(f"{where}.path: {path!r} is a file; give a model directory, a .gguf file or builtin:NAME")
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise PreflightError(f"{where}.path: model directory {path!r} does not exist")
    return None   # a hub id: resolved from the local Hugging Face cache when the model loads


def preflight(suite, *, check_model: bool = True):
    """Check a loaded suite's data and model without loading weights; return the data records.

    ``check_model=False`` when the caller hands over an already-loaded model.

    Raises:
        PreflightError / DataError: one line naming the file or field.
    """
    from .data import load_records

    where = suite.path or "<suite>"
    d = suite.data
    recs = load_records(suite.resolve_path(d.path), prompt_field=d.prompt_field, reference_field=d.reference_field,
                        split=d.split, limit=d.limit)
    if not check_model:
        return recs
    from .models.served import ServedSpec

    if isinstance(suite.model, ServedSpec):   # a served model: its server is asked when the run starts
        return recs
    model_dir = check_model_spec(suite.model, where=f"{where}: model")
    if model_dir is not None:
        n = context_length(model_dir)
        if n is not None and suite.generation.max_new_tokens >= n:
            raise PreflightError(f"{where}: generation.max_new_tokens: {suite.generation.max_new_tokens} does not fit "
                                 f"the model's context window of {n} tokens ({model_dir / 'config.json'})")
    return recs


def validate_suite(path: str | os.PathLike):
    """`audit validate`: load the suite and run every check a run makes before loading weights.

    Returns ``(suite, records)``.
    """
    from .suite import load_suite

    suite = load_suite(path)
    return suite, preflight(suite)
