"""Corpus perplexity from per-sample summed negative log-likelihoods."""

from __future__ import annotations

import math
from collections.abc import Iterable


def perplexity(nll_sums: Iterable[float], token_counts: Iterable[int]) -> float:
    """Token-weighted perplexity: ``exp(sum(nll_sums) / sum(token_counts))``.

    Each sample contributes its summed negative log-likelihood (natural log,
    over its scored tokens) and how many tokens were scored. This is the
    perplexity of the whole corpus as one long sequence, the standard LM
    figure. We deliberately do *not* average per-sample perplexities: that
    weights a 3-token sample like a 300-token one, and since ``exp`` is convex
    a few short, badly predicted samples blow the mean up (it is always >= the
    token-weighted value, by Jensen), so it is neither comparable across
    datasets with different length profiles nor across papers.

    Args:
        nll_sums: Per-sample summed NLL in nats (floats, numpy or 0-d tensors).
        token_counts: Per-sample number of tokens the NLL was summed over
            (ints, or floats if tokens were weighted).

    Returns:
        Perplexity >= 1 for valid NLLs; ``inf`` if it overflows a float.

    Raises:
        ValueError: the two inputs differ in length, are empty, a count is
            negative, or the total count is 0.

    Example:
        >>> perplexity([2.0, 4.0], [2, 4])  # exp(6 / 6)
        2.718281828459045
    """
    nlls = [float(x) for x in nll_sums]
    counts = [float(c) for c in token_counts]
    if len(nlls) != len(counts):
        raise ValueError(f"got {len(nlls)} NLL sums but {len(counts)} token counts")
    if any(c < 0 for c in counts):
        raise ValueError("token counts must be non-negative")
    total_tokens = math.fsum(counts)
    if total_tokens == 0:
        raise ValueError("no scored tokens: perplexity is undefined")
    try:
        return math.exp(math.fsum(nlls) / total_tokens)
    except OverflowError:
        return math.inf
