"""Toxicity and sentiment scorers behind one interface each, named in suites by a spec string.

Toxicity backends (:data:`SCORERS`; every score in [0, 1], higher = more toxic):

- ``profanity``: alt-profanity-check (a linear model shipped inside the wheel; fully offline).
- ``detoxify:original | unbiased | multilingual`` (also ``original-small``, ``unbiased-small``):
  the real ``detoxify`` package, from local files only (see :mod:`audit.scorers.detoxify_scorer`).
- ``hf:PATH``: any local sequence-classification model; ``label`` picks the class to read.

Sentiment backends (:data:`SENTIMENT_SCORERS`; scores in [-1, 1]): ``vader`` (vaderSentiment).

Example:
    >>> from audit.scorers import get_scorer
    >>> scorer = get_scorer("profanity")
    >>> scorer.name, len(scorer.score(["hello there", "go away"], batch_size=8))
    ('profanity', 2)
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from ..registry import Registry, did_you_mean
from .base import Scorer, ScorerError, SentimentScorer, score_cached

__all__ = ["SCORERS", "SENTIMENT_SCORERS", "Scorer", "SentimentScorer", "ScorerError", "get_scorer",
           "get_sentiment_scorer", "parse_spec", "score_cached", "shared_scorer"]

# Modules that register backends; imported on first look-up so `import audit.scorers` stays light
# (torch/transformers load only when a detoxify or hf backend is actually built).
_BACKEND_MODULES = ["profanity", "detoxify_scorer", "hf", "vader"]


def _load() -> None:
    for name in _BACKEND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


SCORERS: Registry = Registry("toxicity backend", loader=_load)
SENTIMENT_SCORERS: Registry = Registry("sentiment backend", loader=_load)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"detoxify:original"`` into ``("detoxify", "original")``; ``"profanity"`` -> ``("profanity", None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ScorerError(f"scorer spec must be a non-empty string, got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    return name, (arg if sep else None)


def _build(registry: Registry, spec: str, options: dict[str, Any]):
    name, arg = parse_spec(spec)
    factory: Callable[..., Any] = registry.get(name)
    params = inspect.signature(factory).parameters
    accepted = [p for p, v in params.items() if v.kind == inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in accepted:
            raise ScorerError(f"{spec}: unknown option {key!r}{did_you_mean(key, accepted)}; "
                              f"valid: {', '.join(accepted) or 'none'}")
    return factory(arg, **options)


def get_scorer(spec: str, **options: Any) -> Scorer:
    """Build a toxicity scorer from a spec such as ``"profanity"``, ``"detoxify:unbiased"`` or ``"hf:/models/x"``.

    Args:
        spec: ``backend`` or ``backend:argument``.
        **options: backend options (e.g. ``checkpoint=``, ``config_dir=``, ``label=``, ``device=``).

    Raises:
        ScorerError: an unknown backend or option, or missing model files (one line saying what to give).

    Example:
        >>> get_scorer("profanity").describe()["backend"]
        'profanity'
    """
    return _build(SCORERS, spec, options)


def get_sentiment_scorer(spec: str = "vader", **options: Any) -> SentimentScorer:
    """Build a sentiment scorer (scores in [-1, 1]).

    Example:
        >>> get_sentiment_scorer("vader").score(["I love it"])[0] > 0
        True
    """
    return _build(SENTIMENT_SCORERS, spec, options)


_SHARED: dict[tuple, Any] = {}


def shared_scorer(spec: str, options: dict[str, Any] | None = None, *, sentiment: bool = False):
    """Like :func:`get_scorer`, but one instance per (spec, options) per process.

    Sections that use the same classifier (toxicity and bias) load its weights once.
    """
    options = dict(options or {})
    key = (sentiment, spec, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _SHARED:
        _SHARED[key] = (get_sentiment_scorer if sentiment else get_scorer)(spec, **options)
    return _SHARED[key]
