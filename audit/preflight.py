"""Everything about a run that can be known without loading weights, checked up front.

``audit validate`` and ``audit run`` share these checks, so validate says "ok" only when run would
get as far as loading the model: the data file reads and validates, a ``builtin:`` name exists, a
local model directory has a config, weights and tokenizer files (the rules live in
:mod:`audit.models.files`, which the local model reads too), and ``max_new_tokens`` fits the
context window its ``config.json`` declares. Each failure is one line naming the file or field.

Example:
    >>> from audit.suite import load_suite
    >>> len(preflight(load_suite("demo"), check_model=False)) > 0
    True
"""

from __future__ import annotations

from pathlib import Path

from .config import ModelSpec
from .data import load_data
from .errors import AuditError
from .models.files import context_length, locate


class PreflightError(AuditError):
    """Something a run needs is missing or invalid; found before any weights load."""


def check_model_spec(spec: ModelSpec, *, where: str = "model") -> Path | None:
    """The model a :class:`~audit.config.ModelSpec` names, as far as knowable without loading it.

    Returns the local model directory when there is one already on disk (else None: a builtin
    not built yet, a ``.gguf`` file, or a hub id looked up in the cache at load time).
    """
    found = locate(spec.path, trust_remote_code=spec.trust_remote_code, where=where)
    return Path(found.path) if found.kind == "dir" else None


def check_window(max_new_tokens: int, window: int | None, where: str, source: object) -> None:
    """``max_new_tokens`` must leave room for a prompt in the model's context window (else an IndexError deep
    inside generation); checked from ``config.json`` before loading and from the loaded model after."""
    if window is not None and max_new_tokens >= window:
        raise PreflightError(f"{where}: generation.max_new_tokens: {max_new_tokens} does not fit the model's "
                             f"context window of {window} tokens ({source})")


def preflight(suite, *, check_model: bool = True):
    """Check a loaded suite's data and model without loading weights; return the data records.

    ``check_model=False`` when the caller hands over an already-loaded model.

    Raises:
        PreflightError / DataError: one line naming the file or field.
    """
    where = suite.path or "<suite>"
    recs = load_data(suite.data, suite.base_dir)
    if not check_model:
        return recs
    if not isinstance(suite.model, ModelSpec):   # a served model: its server is asked when the run starts
        return recs
    model_dir = check_model_spec(suite.model, where=f"{where}: model")
    if model_dir is not None:
        check_window(suite.generation.max_new_tokens, context_length(model_dir), where, model_dir / "config.json")
    return recs

