"""Distinct-n: the share of n-grams in a corpus that are unique (Li et al., 2016)."""

from __future__ import annotations

from collections.abc import Iterable

from audit.metrics._tokens import Text, Tokenizer, check_order, ngrams, to_token_lists


def distinct_n(texts: Iterable[Text], n: int, *, tokenizer: Tokenizer | None = None) -> float:
    """Corpus-level distinct-n: unique n-grams / total n-grams.

    Counted over the whole corpus (an n-gram repeated in two texts counts
    once in the numerator), never across text boundaries.

    Args:
        texts: Strings (whitespace split unless ``tokenizer`` is given) or
            token sequences.
        n: N-gram order (positive int).
        tokenizer: Callable applied to each string text.

    Returns:
        A value in [0, 1]; 1 means no n-gram ever repeats. 0.0 when the corpus
        has no n-grams at all (every text shorter than ``n``), so an empty
        input reads as "no diversity" rather than raising.

    Example:
        >>> distinct_n(["a b a b", "a b c"], 2)  # ab ba ab | ab bc -> 3 unique / 5
        0.6
        >>> distinct_n(["a"], 2)
        0.0
    """
    check_order(n)
    seen = set()
    total = 0
    for tokens in to_token_lists(texts, tokenizer=tokenizer):
        grams = ngrams(tokens, n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
