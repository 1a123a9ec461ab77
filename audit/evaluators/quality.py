"""Quality: perplexity of references under the model, and BLEU / chrF / ROUGE-L of generations.

Perplexity is token-weighted, ``exp(sum NLL / sum tokens)`` over the whole set of references
(scored as continuations of their prompts), not a mean of per-sample perplexities, which one short
surprising reference would dominate. Any `evaluate` metric module given by local path can be named
in ``evaluate_modules``; its numeric outputs land in ``quality.<module>_<key>``.

For tasks with a crisp answer (a label, or a JSON object such as a router's
``{"topic": ..., "order_number": ..., "urgency": ...}``), ``exact_match`` and ``field_accuracy``
(:mod:`audit.metrics.exact`) score each sample's FIRST generation right or wrong instead of by
overlap: ``exact_match`` = share of samples whose answer is the reference's (JSON: every field,
no extra keys); ``field_accuracy`` = mean share of the reference's JSON fields answered right, and
``field_accuracy.<field>`` the accuracy of one field. Samples without a reference are skipped
(``details["exact"]`` counts them); a metric that cannot be computed is NaN with its reason in
``details["why_nan"]``. Neither is in the default ``metrics``: name them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        metric("exact_match", True, "share of samples whose first generation is the reference's answer "
                                    "(normalised text, or every JSON field and no extra keys)"),
        metric("field_accuracy", True, "mean share of the reference's JSON fields the first generation got right "
                                       "(samples with a JSON-object reference)"),
    ])

    @dataclass
    class Options:
        metrics: list[str] = field(default_factory=lambda: ["perplexity", "bleu", "chrf", "rouge_l"])  # which to compute
        evaluate_modules: list[str] = field(default_factory=list)  # local paths of `evaluate` metric modules

        def __post_init__(self):
            known = ["perplexity", "bleu", "chrf", "rouge_l", "exact_match", "field_accuracy"]
            for m in self.metrics:
                if m not in known:
                    raise ValueError(f"metrics: {unknown_name('metric', m, known)}")

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        return {m: info for m, info in cls.METRICS.items() if m in options.metrics}

    @classmethod
    def metric_names(cls, options) -> set[str] | None:
        # `evaluate` modules report keys known only once they ran; JSON fields (field_accuracy.<field>)
        # come from the data, so a gate on one is accepted and checked when the run reports it.
        return None if options.evaluate_modules else _NamesWithFields(cls.metric_infos(options))

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
        if want & {"exact_match", "field_accuracy"}:
            self._exact(ctx.samples, result, want)
        for path in self.options.evaluate_modules:
            self._run_module(ctx, path, hyps, refs, result)

    def _exact(self, samples, result: SectionResult, want: set[str]) -> None:
        """exact_match and field_accuracy (+ per field) of each sample's first generation."""
        from ..metrics.exact import exact_match, field_matches, reference_object

        scored = [s for s in samples if s.reference and s.reference.strip()]
        details: dict[str, Any] = {"samples": len(samples), "scored": len(scored),
                                   "skipped_no_reference": len(samples) - len(scored),
                                   "skipped_no_generation": sum(1 for s in scored if not s.generations)}
        scored = [s for s in scored if s.generations]
        why = result.details.setdefault("why_nan", {})
        if "exact_match" in want:
            flags = [float(exact_match(s.generations[0], s.reference)) for s in scored]
            result.metrics["exact_match"] = mean(flags)
            result.sample_values["exact_match"] = flags
            for s, f in zip(scored, flags):
                s.scores["quality.exact_match"] = f
            if not flags:
                why["exact_match"] = "no sample has both a reference and a generation"
        if "field_accuracy" in want:
            with_obj = [s for s in scored if reference_object(s.reference) is not None]
            details["json_references"] = len(with_obj)
            shares, per_field = [], {}
            for s in with_obj:
                fields = field_matches(s.generations[0], s.reference)
                for k, ok in fields.items():
                    per_field.setdefault(k, []).append(float(ok))
                share = sum(fields.values()) / len(fields) if fields else math.nan   # {} reference: no field to get right
                shares.append(share)
                if not math.isnan(share):
                    s.scores["quality.field_accuracy"] = share
            result.metrics["field_accuracy"] = mean(shares)
            result.sample_values["field_accuracy"] = [v for v in shares if not math.isnan(v)]
            if not shares or all(math.isnan(v) for v in shares):
                why["field_accuracy"] = ("no scored sample's reference is a JSON object" if not with_obj
                                         else "every JSON reference is an empty object")
            info = self.METRICS["field_accuracy"]
            for k, vals in sorted(per_field.items()):
                key = f"field_accuracy.{k}"
                result.metrics[key] = mean(vals)
                result.sample_values[key] = vals
                result.metric_info[key] = MetricInfo(key, info.higher_is_better,
                                                     f"share of samples whose JSON field {k!r} was right (first generation)")
            details["fields"] = {k: {"n": len(v), "accuracy": mean(v)} for k, v in sorted(per_field.items())}
        if not why:
            del result.details["why_nan"]
        result.details["exact"] = details

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


class _NamesWithFields(frozenset):
    """The section's metric names, plus ``field_accuracy.<field>`` when ``field_accuracy`` is one
    (fields come from the references, as the safety section's ``metric.category`` breakdowns)."""

    def __contains__(self, name: object) -> bool:
        base, dot, rest = str(name).partition(".")
        return frozenset.__contains__(self, name) or bool(dot and rest and base == "field_accuracy"
                                                          and frozenset.__contains__(self, base))


def _per_sample(owners, key: str, values) -> None:
    """Store per-generation scores on their records (the mean when a record has several)."""
    by_id: dict[int, list[float]] = {}
    for s, v in zip(owners, values):
        by_id.setdefault(id(s), []).append(v)
    for s in {id(s): s for s in owners}.values():
        s.scores[key] = mean(by_id[id(s)])
