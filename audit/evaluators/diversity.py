"""Diversity: distinct-n, self-BLEU, within-generation repetition (rep-n) and n-gram entropy.

Distinct-n, self-BLEU and entropy are corpus-level (over all generations); rep-n is a mean of a
per-generation rate. Tokens are whitespace-split words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import metrics as M
from ..errors import AuditError
from ..results import MetricInfo, SectionResult
from . import SECTIONS
from .base import Context, Evaluator, mean, metric


@SECTIONS.register("diversity")
class DiversityEvaluator(Evaluator):
    name = "diversity"

    @dataclass
    class Options:
        distinct: list[int] = field(default_factory=lambda: [1, 2, 3])   # n for distinct-n
        repetition: list[int] = field(default_factory=lambda: [2, 3, 4])  # n for rep-n
        self_bleu_max_n: int = 4                                          # BLEU order for self-BLEU
        entropy_n: int = 2                                                # n for n-gram entropy

        def __post_init__(self):
            for n in [*self.distinct, *self.repetition, self.self_bleu_max_n, self.entropy_n]:
                if not isinstance(n, int) or n < 1:
                    raise ValueError(f"n-gram orders must be integers >= 1, got {n!r}")

    @classmethod
    def metric_infos(cls, o) -> dict[str, MetricInfo]:
        return dict([
            *(metric(f"distinct_{n}", True, f"unique {n}-grams / total {n}-grams over all generations", per_sample=False)
              for n in o.distinct),
            *(metric(f"rep_{n}", False, f"mean over generations of 1 - unique/total {n}-grams") for n in o.repetition),
            metric("self_bleu", False, f"mean BLEU-{o.self_bleu_max_n} of each generation against all others (nltk method1)",
                   per_sample=False),
            metric(f"entropy_{o.entropy_n}", True, f"Shannon entropy (bits) of the {o.entropy_n}-gram distribution",
                   per_sample=False),
        ])

    def _evaluate(self, ctx: Context, result: SectionResult) -> None:
        o = self.options
        texts = [g for s in ctx.samples for g in s.generations]
        if len(texts) < 2:
            raise AuditError("diversity: needs at least 2 generations")
        for n in o.distinct:
            result.metrics[f"distinct_{n}"] = M.distinct_n(texts, n)
        for n in o.repetition:
            per_text = M.rep_n_per_text(texts, n)
            result.metrics[f"rep_{n}"] = mean(per_text)
            result.sample_values[f"rep_{n}"] = [v for v in per_text if v == v]
            i = 0
            for s in ctx.samples:
                s.scores[f"diversity.rep_{n}"] = mean(per_text[i:i + len(s.generations)])
                i += len(s.generations)
        result.metrics["self_bleu"] = M.self_bleu(texts, max_n=o.self_bleu_max_n)
        result.metrics[f"entropy_{o.entropy_n}"] = M.ngram_entropy(texts, o.entropy_n)
