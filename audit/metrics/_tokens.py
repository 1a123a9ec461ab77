"""Shared input handling for the n-gram metrics: texts -> token lists -> n-grams.

Every n-gram metric in this package accepts the same kinds of input, so the
rules live here once:

* a ``str`` is split on whitespace (``str.split()``), or passed to
  ``tokenizer`` when one is given;
* any other sequence (list, tuple) is taken as an already tokenized text and
  used as-is; its tokens only need to be hashable.

N-grams never cross text boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Union

Text = Union[str, Sequence[Hashable]]
Tokenizer = Callable[[str], Sequence[Hashable]]


def to_token_lists(texts: Iterable[Text], *, tokenizer: Tokenizer | None = None) -> list[list]:
    """Normalise a corpus to a list of token lists.

    Args:
        texts: Strings and/or token sequences.
        tokenizer: Called on each string instead of ``str.split``.

    Returns:
        One list of tokens per text, in input order.

    Raises:
        TypeError: ``texts`` is a single string (a classic mistake that would
            otherwise be scored character by character), or an item is neither
            a string nor a sequence.

    Example:
        >>> to_token_lists(["a b  c", ("x", "y")])
        [['a', 'b', 'c'], ['x', 'y']]
        >>> to_token_lists(["ab"], tokenizer=list)
        [['a', 'b']]
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of texts, not a single string")
    split = tokenizer if tokenizer is not None else str.split
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            out.append(list(split(text)))
        elif isinstance(text, Sequence) and not isinstance(text, bytes):
            out.append(list(text))
        else:
            raise TypeError(
                f"texts[{i}] is {type(text).__name__}; expected a string or a sequence of tokens"
            )
    return out


def check_order(n: int, *, name: str = "n") -> int:
    """Validate an n-gram order (a positive int; ``bool`` is refused).

    Example:
        >>> check_order(2)
        2
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    """All contiguous n-grams of one token list, as tuples (empty if too short).

    Example:
        >>> ngrams(["a", "b", "c"], 2)
        [('a', 'b'), ('b', 'c')]
        >>> ngrams(["a"], 2)
        []
    """
    return list(zip(*(tokens[k:] for k in range(n))))
