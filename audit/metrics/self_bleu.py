"""Self-BLEU: how much each generated text overlaps with the rest of the corpus.

Definition (the one everybody means, made precise): for every text ``i``,
score it with NLTK's ``sentence_bleu`` using text ``i`` as the hypothesis and
*all other* texts as references, uniform weights ``(1/N,)*N`` and
``SmoothingFunction().method1`` (epsilon 0.1); Self-BLEU is the mean of those
scores. Higher means less diverse.

This module reproduces that number (to floating-point rounding, far below
1e-9) without calling NLTK. NLTK's loop is quadratic: every hypothesis
re-counts the n-grams of every reference, ~21 s for 1,000 short texts. Here
the corpus is counted once, so time is linear in the number of tokens.

The trick: for hypothesis ``i`` and n-gram ``g`` the clipping count is
``max over j != i of count_j(g)``. Keeping, per n-gram, the largest per-text
count, which text owns it, and the second largest count, answers that in O(1):
it is the second largest if ``i`` owns the largest, else the largest. The
brevity penalty needs the other-text length closest to ``len(i)`` (ties go to
the shorter), which comes from the sorted multiset of lengths with one copy
of ``len(i)`` removed.

NLTK behaviour replicated on purpose (``nltk/translate/bleu_score.py``):

* If the hypothesis has no unigram match at all (including an empty
  hypothesis, or one whose tokens appear in no other text) the score is
  exactly 0; smoothing is never applied in that case.
* Otherwise, a precision with no matches becomes ``0.1 / denominator``
  (method1), and this happens even for orders the hypothesis is too short to
  have: a 2-token text gets ``p_3 = p_4 = 0.1 / 1``. So a short text that
  matches perfectly still scores well below 1.
* The precision denominator is ``max(1, len - n + 1)``; n-grams are counted
  with clipping, as in BLEU.
* Brevity penalty: 1 if ``len > r``, else ``exp(1 - r/len)`` where ``r`` is
  the closest other length, ties resolved to the shorter one.
* NLTK's unnormalised ``Fraction`` only matters for corpus-level sums; for a
  single hypothesis the value is ``numerator / denominator`` either way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from itertools import chain

import numpy as np

from audit.metrics._tokens import Text, Tokenizer, check_order, to_token_lists

# SmoothingFunction().method1 default: add epsilon to zero-match numerators.
_EPSILON = 0.1


def self_bleu(texts: Iterable[Text], max_n: int = 4, *, tokenizer: Tokenizer | None = None) -> float:
    """Mean Self-BLEU of a corpus (NLTK ``sentence_bleu`` + method1 semantics).

    Args:
        texts: At least two texts: strings (whitespace split unless
            ``tokenizer`` is given) or token sequences.
        max_n: Highest n-gram order; weights are uniform ``1/max_n``.
        tokenizer: Callable applied to each string text.

    Returns:
        The mean over texts of each text's BLEU against all the others, in
        [0, 1]. Higher means the texts repeat each other (less diverse).

    Raises:
        ValueError: fewer than two texts (every text needs at least one other
            text to be its reference; NLTK itself fails on zero references),
            or ``max_n`` is not a positive integer.

    Example:
        >>> round(self_bleu(["the cat sat", "the cat sat", "a dog ran"], max_n=2), 6)
        0.666667
    """
    scores = _scores(texts, max_n, tokenizer)
    # Plain left-to-right sum / count: what the reference NLTK loop computes.
    return sum(scores) / len(scores)


def self_bleu_per_text(
    texts: Iterable[Text], max_n: int = 4, *, tokenizer: Tokenizer | None = None
) -> list[float]:
    """Each text's BLEU against all the other texts (what ``self_bleu`` averages).

    Same arguments and errors as :func:`self_bleu`; useful for per-sample
    records (which generations are the near-duplicates).

    Example:
        >>> self_bleu_per_text(["a b", "a b", "c d"], max_n=2)
        [1.0, 1.0, 0.0]
    """
    return _scores(texts, max_n, tokenizer)


def _scores(texts: Iterable[Text], max_n: int, tokenizer: Tokenizer | None) -> list[float]:
    check_order(max_n, name="max_n")
    token_lists = to_token_lists(texts, tokenizer=tokenizer)
    n_docs = len(token_lists)
    if n_docs < 2:
        raise ValueError(
            f"self_bleu needs at least 2 texts (each text is scored against the others); got {n_docs}"
        )

    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=n_docs)
    # Intern tokens as dense ints (first-seen order): all later work is on
    # integer numpy arrays. A defaultdict whose factory is its own length
    # hands out 0, 1, 2, ... without a Python-level loop.
    vocab: defaultdict = defaultdict()
    vocab.default_factory = vocab.__len__
    tok = np.fromiter(
        map(vocab.__getitem__, chain.from_iterable(token_lists)),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    n_tokens = tok.size
    doc_of_tok = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    # Tokens left in the text from each position (itself included): position p
    # starts an n-gram iff remaining[p] >= n.
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(n_tokens, dtype=np.int64)

    precisions = []
    pos = np.arange(n_tokens, dtype=np.int64)
    gid = tok
    for n in range(1, max_n + 1):
        if n > 1 and pos.size:
            keep = remaining[pos] >= n
            pos, prev = pos[keep], gid[keep]
            # (n-1)-gram id and next token -> one int key, then re-densified
            # to 0..(distinct n-grams - 1). Both factors stay below the token
            # count, so the key fits int64 for any corpus under ~3e9 tokens.
            key = prev * max(len(vocab), 1) + tok[pos + (n - 1)]
            gid = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64, copy=False)
        matches = _clipped_matches(gid, doc_of_tok[pos], n_docs)
        denominator = np.maximum(lengths - (n - 1), 1).astype(np.float64)
        # method1: zero-match precisions become epsilon / denominator. Both
        # branches are one IEEE division of the same operands NLTK divides.
        precisions.append(np.where(matches > 0, matches, _EPSILON) / denominator)
        if n == 1:
            unigram_matches = matches

    closest = _closest_other_length(lengths)
    # Final combination in plain Python with NLTK's exact operations
    # (math.log, math.fsum, math.exp) so results are bit-identical, not just
    # close; it is O(texts * max_n) scalar work, a small share of the runtime.
    weight = 1 / max_n
    log, fsum, exp = math.log, math.fsum, math.exp
    scores = []
    rows = np.stack(precisions, axis=1).tolist()
    for row, hyp_len, ref_len, unigram in zip(
        rows, lengths.tolist(), closest.tolist(), unigram_matches.tolist()
    ):
        if unigram == 0:
            # NLTK returns 0 when nothing matches at unigram level (this also
            # covers empty hypotheses); smoothing is never reached.
            scores.append(0.0)
            continue
        brevity = 1.0 if hyp_len > ref_len else exp(1 - ref_len / hyp_len)
        scores.append(brevity * exp(fsum([weight * log(p) for p in row])))
    return scores


def _clipped_matches(gid: np.ndarray, doc: np.ndarray, n_docs: int) -> np.ndarray:
    """Per text: sum over its n-grams of min(own count, max count in any other text).

    ``gid``/``doc`` list one entry per n-gram occurrence, with ``doc``
    non-decreasing (occurrences come in corpus order).
    """
    if gid.size == 0:
        return np.zeros(n_docs)
    # Sort occurrences by (n-gram, doc) so equal pairs are adjacent and a
    # run-length encoding counts them.
    n_grams = int(gid.max()) + 1
    if n_grams * n_docs < 2**62:
        # One plain sort of a composite int key is the fastest route.
        key = np.sort(gid * n_docs + doc)
        g = key // n_docs
        d = key - g * n_docs
    else:
        # Astronomically large corpora: a stable sort by n-gram keeps docs
        # ascending inside each n-gram (they arrive in corpus order).
        order = np.argsort(gid, kind="stable")
        g, d = gid[order], doc[order]
    new_pair = np.empty(g.size, dtype=bool)
    new_pair[0] = True
    np.not_equal(g[1:], g[:-1], out=new_pair[1:])
    new_group = new_pair.copy()
    new_pair[1:] |= d[1:] != d[:-1]
    starts = np.flatnonzero(new_pair)
    pair_g_new = new_group[starts]  # pair opens a new n-gram group
    pair_d = d[starts]
    pair_c = np.diff(np.append(starts, g.size))

    group_starts = np.flatnonzero(pair_g_new)
    group_of_pair = np.cumsum(pair_g_new) - 1
    top1 = np.maximum.reduceat(pair_c, group_starts)
    # The owner of the top count: first pair in its group reaching it.
    at_top = np.flatnonzero(pair_c == top1[group_of_pair])
    first = np.ones(at_top.size, dtype=bool)
    first[1:] = group_of_pair[at_top[1:]] != group_of_pair[at_top[:-1]]
    owner_pair = at_top[first]
    # Second largest count = largest once the owner is taken out (0 if alone).
    without_owner = pair_c.copy()
    without_owner[owner_pair] = 0
    top2 = np.maximum.reduceat(without_owner, group_starts)

    best_other = top1[group_of_pair]
    is_owner = np.zeros(pair_c.size, dtype=bool)
    is_owner[owner_pair] = True
    best_other[is_owner] = top2[group_of_pair[is_owner]]
    clipped = np.minimum(pair_c, best_other)
    return np.bincount(pair_d, weights=clipped, minlength=n_docs)


def _closest_other_length(lengths: np.ndarray) -> np.ndarray:
    """For each text, the length among the *other* texts closest to its own.

    Ties go to the shorter length, as in NLTK's ``closest_ref_length``.
    Needs at least two texts.
    """
    values, counts = np.unique(lengths, return_counts=True)
    idx = np.searchsorted(values, lengths)
    # Another text has the same length: distance 0, that's the answer.
    same = counts[idx] >= 2
    big = np.iinfo(np.int64).max // 4
    below = np.where(idx > 0, values[np.maximum(idx - 1, 0)], -big)
    above = np.where(idx + 1 < values.size, values[np.minimum(idx + 1, values.size - 1)], big)
    nearer = np.where(lengths - below <= above - lengths, below, above)
    return np.where(same, lengths, nearer)
