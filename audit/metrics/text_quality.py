"""Reference-based quality metrics: thin wrappers over sacrebleu and rouge-score.

The wrappers exist so the rest of the toolkit has one calling convention:
``hyps`` is a list of strings and ``refs`` has one entry per hypothesis, either
a single reference string or a list of reference strings (the number may vary
per hypothesis). Scores are exactly what the underlying libraries return:

* BLEU and chrF on sacrebleu's 0-100 scale, with sacrebleu's defaults
  (``sentence_bleu`` therefore uses sacrebleu's sentence-level effective-order
  smoothing, which differs from corpus BLEU on purpose);
* ROUGE-L F-measure in [0, 1] from ``rouge_score`` with ``use_stemmer=False``;
  with several references the best-F reference counts (``score_multi``).

Corpus-level functions raise ``ValueError`` on an empty corpus (a score of
nothing is almost always an upstream bug); per-sample functions return ``[]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Union

import sacrebleu

References = Sequence[Union[str, Sequence[str]]]


def corpus_bleu(hyps: Sequence[str], refs: References) -> float:
    """Corpus BLEU (sacrebleu, 0-100).

    Example:
        >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
        100.0
    """
    hyps, ref_lists = _pairs(hyps, refs, allow_empty=False)
    return float(sacrebleu.corpus_bleu(hyps, _streams(ref_lists)).score)


def corpus_chrf(hyps: Sequence[str], refs: References) -> float:
    """Corpus chrF (sacrebleu defaults: char order 6, beta 2; 0-100).

    Example:
        >>> corpus_chrf(["the cat"], ["the cat"])
        100.0
    """
    hyps, ref_lists = _pairs(hyps, refs, allow_empty=False)
    return float(sacrebleu.corpus_chrf(hyps, _streams(ref_lists)).score)


def rouge_l(hyps: Sequence[str], refs: References) -> float:
    """Mean per-sample ROUGE-L F-measure (rouge-score, no stemming; 0-1).

    Example:
        >>> rouge_l(["the cat sat"], ["the cat"])
        0.8
    """
    scores = sentence_rouge_l(*_pairs(hyps, refs, allow_empty=False))
    return math.fsum(scores) / len(scores)


def sentence_bleu(hyps: Sequence[str], refs: References) -> list[float]:
    """Per-sample sacrebleu ``sentence_bleu`` scores (0-100), one per hypothesis.

    Example:
        >>> [round(s, 6) for s in sentence_bleu(["the cat sat on the mat", "a"], ["the cat sat on the mat", "b"])]
        [100.0, 0.0]
    """
    hyps, ref_lists = _pairs(hyps, refs, allow_empty=True)
    return [float(sacrebleu.sentence_bleu(h, r).score) for h, r in zip(hyps, ref_lists)]


def sentence_chrf(hyps: Sequence[str], refs: References) -> list[float]:
    """Per-sample sacrebleu ``sentence_chrf`` scores (0-100), one per hypothesis.

    Example:
        >>> sentence_chrf(["the cat"], ["the cat"])
        [100.0]
    """
    hyps, ref_lists = _pairs(hyps, refs, allow_empty=True)
    return [float(sacrebleu.sentence_chrf(h, r).score) for h, r in zip(hyps, ref_lists)]


def sentence_rouge_l(hyps: Sequence[str], refs: References) -> list[float]:
    """Per-sample ROUGE-L F-measure (0-1), one per hypothesis.

    Example:
        >>> sentence_rouge_l(["the cat sat", "dog"], ["the cat", ["a dog", "cat"]])
        [0.8, 0.6666666666666666]
    """
    hyps, ref_lists = _pairs(hyps, refs, allow_empty=True)
    scorer = _rouge_scorer()
    # rouge_score takes (target, prediction): reference first.
    return [float(scorer.score_multi(r, h)["rougeL"].fmeasure) for h, r in zip(hyps, ref_lists)]


@lru_cache(maxsize=1)
def _rouge_scorer():
    # Imported lazily: rouge_score pulls in nltk/absl at import time.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _pairs(hyps: Sequence[str], refs: References, *, allow_empty: bool) -> tuple[list[str], list[list[str]]]:
    """Validate inputs; return hyps and one list of reference strings per hyp."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be lists, not single strings")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} reference entries")
    if not hyps and not allow_empty:
        raise ValueError("no hypotheses to score")
    ref_lists = []
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        if not isinstance(hyp, str):
            raise TypeError(f"hyps[{i}] is {type(hyp).__name__}, expected str")
        group = [ref] if isinstance(ref, str) else list(ref)
        if not group or not all(isinstance(r, str) for r in group):
            raise ValueError(f"refs[{i}] must be a string or a non-empty list of strings")
        ref_lists.append(group)
    return hyps, ref_lists


def _streams(ref_lists: list[list[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacrebleu's reference streams.

    sacrebleu wants one stream per reference "slot"; hypotheses with fewer
    references are padded with ``None``, which sacrebleu skips.
    """
    width = max(len(r) for r in ref_lists)
    return [[r[k] if k < len(r) else None for r in ref_lists] for k in range(width)]
