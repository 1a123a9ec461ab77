"""Rep-n: how much each text repeats its own n-grams (Welleck et al., 2020)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from audit.metrics._tokens import Text, Tokenizer, check_order, ngrams, to_token_lists


def rep_n_per_text(texts: Iterable[Text], n: int, *, tokenizer: Tokenizer | None = None) -> list[float]:
    """Per text: ``1 - unique n-grams / total n-grams`` within that text.

    Args:
        texts: Strings (whitespace split unless ``tokenizer`` is given) or
            token sequences.
        n: N-gram order (positive int).
        tokenizer: Callable applied to each string text.

    Returns:
        One value per text, in [0, 1); 0 means no repeated n-gram. ``nan`` for
        a text shorter than ``n`` (it has no n-grams, so repetition is
        undefined, and 0 would wrongly read as "perfectly diverse").

    Example:
        >>> rep_n_per_text(["a a a a", "a b", "a"], 2)
        [0.6666666666666667, 0.0, nan]
    """
    check_order(n)
    out = []
    for tokens in to_token_lists(texts, tokenizer=tokenizer):
        grams = ngrams(tokens, n)
        out.append(1 - len(set(grams)) / len(grams) if grams else math.nan)
    return out


def rep_n(texts: Iterable[Text], n: int, *, tokenizer: Tokenizer | None = None) -> float:
    """Mean of :func:`rep_n_per_text` over the texts that have n-grams.

    Texts shorter than ``n`` are skipped (not counted as 0); the result is
    ``nan`` when no text has an n-gram.

    Example:
        >>> round(rep_n(["a a a a", "a b", "a"], 2), 6)  # (2/3 + 0) / 2, "a" skipped
        0.333333
        >>> rep_n(["a"], 2)
        nan
    """
    values = [v for v in rep_n_per_text(texts, n, tokenizer=tokenizer) if not math.isnan(v)]
    return math.fsum(values) / len(values) if values else math.nan
