"""N-gram entropy: Shannon entropy of a corpus's n-gram distribution."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from audit.metrics._tokens import Text, Tokenizer, check_order, ngrams, to_token_lists


def ngram_entropy(texts: Iterable[Text], n: int, *, tokenizer: Tokenizer | None = None) -> float:
    """Shannon entropy, in **bits** (log base 2), of the corpus n-gram frequencies.

    The distribution is the empirical one over all n-grams of all texts
    (never across text boundaries). Bits rather than nats because the number
    reads directly as "equivalent to 2**H equally likely n-grams", which is
    how diversity is usually reported; divide by ``log2(e)`` for nats.

    Args:
        texts: Strings (whitespace split unless ``tokenizer`` is given) or
            token sequences.
        n: N-gram order (positive int).
        tokenizer: Callable applied to each string text.

    Returns:
        Entropy >= 0 in bits. 0.0 when there are no n-grams (same convention
        as :func:`audit.metrics.distinct_n`: nothing to be uncertain about).

    Example:
        >>> ngram_entropy(["a b c d"], 1)  # four equally likely unigrams
        2.0
        >>> ngram_entropy(["a a", "a"], 1)
        0.0
    """
    check_order(n)
    counts: Counter = Counter()
    for tokens in to_token_lists(texts, tokenizer=tokenizer):
        counts.update(ngrams(tokens, n))
    total = sum(counts.values())
    if not total:
        return 0.0
    # Every term is >= 0, so rounding can't push the sum below zero; "+ 0.0"
    # turns the -0.0 of a single n-gram type into a plain 0.0.
    return math.fsum(-(c / total) * math.log2(c / total) for c in counts.values()) + 0.0
