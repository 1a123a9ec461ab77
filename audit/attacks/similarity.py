"""How similar two generations are, in [0, 1]: the yardstick of attack goals and consistency metrics.

Two measures, both smoothed so short or empty outputs give sensible numbers (unlike unsmoothed
sentence BLEU, which is 0 for any pair without a shared 4-gram):

- ``chrf``: sacrebleu's chrF (character n-grams up to 6, beta 2) divided by 100, made symmetric by
  averaging both directions (chrF weights recall, so ``chrf(a, b) != chrf(b, a)``).
- ``rouge_l``: ROUGE-L F1 (rouge-score, symmetric already).

Identical strings and two blank ones (empty or whitespace only: both measures ignore whitespace)
score 1.0; a blank string against a non-blank one 0.0.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Sequence

SIMILARITIES = ("chrf", "rouge_l")


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
    return sum(similarity(a, b, kind) for a, b in pairs) / len(pairs)
