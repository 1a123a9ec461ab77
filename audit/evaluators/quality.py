"""Quality: perplexity of references under the model, and BLEU / chrF / ROUGE-L of generations.

Perplexity is token-weighted, ``exp(sum NLL / sum tokens)`` over the whole set of references
(scored as continuations of their prompts), not a mean of per-sample perplexities, which one short
surprising reference would dominate. Any `evaluate` metric module given by local path can be named
in ``evaluate_modules``; its numeric outputs land in ``quality.<module>_<key>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import metrics as M
from ..errors import AuditError
from ..registry import unknown_name
from ..results import MetricInfo, SectionResult
from . import SECTIONS
from .base import Context, Evaluator, mean, metric


@SECTIONS.register("quality")
class QualityEvaluator(Evaluator):
    name = "quality"
    METRICS = dict([
        metric("perplexity", False, "exp(mean token NLL) of references given prompts (token-weighted)", per_sample=False),
        metric("bleu", True, "corpus BLEU of generations vs references (sacrebleu, 0-100)", per_sample=False),
        metric("chrf", True, "corpus chrF of generations vs references (sacrebleu, 0-100)", per_sample=False),
        metric("rouge_l", True, "mean ROUGE-L F1 of generations vs references (rouge-score, 0-1)"),
    ])

    @dataclass
    class Options:
        metrics: list[str] = field(default_factory=lambda: ["perplexity", "bleu", "chrf", "rouge_l"])  # which to compute
        evaluate_modules: list[str] = field(default_factory=list)  # local paths of `evaluate` metric modules

        def __post_init__(self):
            known = ["perplexity", "bleu", "chrf", "rouge_l"]
            for m in self.metrics:
                if m not in known:
                    raise ValueError(f"metrics: {unknown_name('metric', m, known)}")

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        return {m: info for m, info in cls.METRICS.items() if m in options.metrics}

    @classmethod
    def metric_names(cls, options) -> set[str] | None:
        # `evaluate` modules report keys known only once they ran.
        return None if options.evaluate_modules else set(cls.metric_infos(options))

    def _evaluate(self, ctx: Context, result: SectionResult) -> None:
        with_ref = [s for s in ctx.samples if s.reference]
        if not with_ref:
            raise AuditError("quality: no records have a reference; quality metrics need references")
        want = set(self.options.metrics)
        if "perplexity" in want:
            # The reference is scored as the answer to the prompt (the assistant's turn under a chat template).
            scores = ctx.loglikelihood([(s.model_input, s.reference) for s in with_ref])
            nll = [-lp for lp, _ in scores]
            ntok = [n for _, n in scores]
            result.metrics["perplexity"] = M.perplexity(nll, ntok)
            for s, lp, n in zip(with_ref, nll, ntok):
                s.scores["quality.nll_per_token"] = lp / n if n else math.nan
            result.sample_values["nll_sum"] = nll
            result.sample_values["n_tokens"] = [float(n) for n in ntok]
        # Every generation is compared with its record's reference.
        hyps = [g for s in with_ref for g in s.generations]
        refs = [s.reference for s in with_ref for _ in s.generations]
        owner = [s for s in with_ref for _ in s.generations]
        if "bleu" in want:
            result.metrics["bleu"] = M.corpus_bleu(hyps, refs)
            _per_sample(owner, "quality.bleu", M.sentence_bleu(hyps, refs))
        if "chrf" in want:
            result.metrics["chrf"] = M.corpus_chrf(hyps, refs)
            _per_sample(owner, "quality.chrf", M.sentence_chrf(hyps, refs))
        if "rouge_l" in want:
            per = M.sentence_rouge_l(hyps, refs)
            result.metrics["rouge_l"] = mean(per)
            result.sample_values["rouge_l"] = per
            _per_sample(owner, "quality.rouge_l", per)
        for path in self.options.evaluate_modules:
            self._run_module(ctx, path, hyps, refs, result)

    def _run_module(self, ctx: Context, path: str, hyps, refs, result: SectionResult) -> None:
        import evaluate

        mpath = ctx.resolve_path(path)
        if not mpath.exists():
            raise AuditError(f"quality.evaluate_modules: {mpath} does not exist (give the local path of an `evaluate` metric module)")
        module = evaluate.load(str(mpath))
        features = set(module.features.keys()) if module.features is not None else {"predictions", "references"}
        kwargs = {"predictions": hyps}
        if "references" in features:
            kwargs["references"] = refs
        out = module.compute(**kwargs)
        name = Path(mpath).stem if Path(mpath).is_file() else Path(mpath).name
        for key, value in (out or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                mkey = f"{name}_{key}"
                result.metrics[mkey] = float(value)
                result.metric_info[mkey] = MetricInfo(mkey, higher_is_better=True, description=f"evaluate module {name}: {key}", per_sample=False)


def _per_sample(owners, key: str, values) -> None:
    """Store per-generation scores on their records (the mean when a record has several)."""
    by_id: dict[int, list[float]] = {}
    for s, v in zip(owners, values):
        by_id.setdefault(id(s), []).append(v)
    for s in {id(s): s for s in owners}.values():
        s.scores[key] = mean(by_id[id(s)])
