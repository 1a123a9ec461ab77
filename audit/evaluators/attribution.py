"""Attribution: explain selected generations token by token, and check that the explanations are faithful.

Which generations: the most toxic continuations (the ``toxicity`` section's records), successful
adversarial prompts (the ``robustness`` section's records: the perturbed prompt and the output it
caused), the worst-quality generations (lowest ``quality.chrf``, else ``quality.rouge_l``) and a
few seeded-random samples. Sections that did not run are skipped (``details["skipped"]`` says so);
list ``attribution`` after them in the suite.

Metrics: the deletion-check faithfulness (top-k attributed sources replaced by the baseline token
vs k random ones, in nats of target log-probability), its win rate, the integrated-gradients
completeness error, and for successful attacks the share of the prompt's attribution that falls
on the tokens the attacker changed. Full explanations (plain dicts) go to
``details["explanations"]`` for the report's heatmaps; ``records`` hold one summary row each.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from ..models.chat import encode_plain
from ..registry import unknown_name
from ..results import MetricInfo, SectionResult
from . import SECTIONS
from .base import Context, Evaluator, mean, metric


@SECTIONS.register("attribution")
class AttributionEvaluator(Evaluator):
    name = "attribution"
    needs_weights = True   # gradients through the embeddings: a served model has none here
    METRICS = dict([
        metric("faithfulness", True, "mean nats by which deleting the top-k attributed tokens lowers the target "
                                     "log-probability more than deleting k random tokens (> 0: better than random)"),
        metric("faithfulness_win_rate", True, "share of explained tokens where top-k deletion beats random deletion"),
        metric("completeness_error", False, "integrated gradients: max relative gap |sum(scores) - (f(x) - f(baseline))| "
                                            "/ |f(x) - f(baseline)| over all explained tokens", per_sample=False),
        metric("completeness_met", True, "integrated gradients: share of explanations whose every token's scores sum to "
                                         "f(x) - f(baseline) within the tolerance (the rest are flagged approximate)",
               per_sample=False),
        metric("attack_perturbed_share", True, "successful attacks: share of the prompt's |attribution| on the tokens "
                                               "the attacker changed (explanations localise the attack)"),
    ])

    @dataclass
    class Options:
        method: str = "integrated_gradients"   # a name in audit.explain.METHODS (`audit ls`)
        most_toxic: int = 2                    # from the toxicity section's records, highest score first
        attacks: int = 2                       # successful attacks from the robustness section
        worst_quality: int = 2                 # lowest quality.chrf (else quality.rouge_l) samples
        random: int = 2                        # seeded-random samples of the main prompt set
        max_target_tokens: int = 16            # explain at most this many generated tokens per sample
        attribute_generated: bool = True       # earlier generated tokens are sources too (False: the prompt only)
        n_steps: int = 20                      # integrated gradients: first points (refined where incomplete)
        max_n_steps: int = 400                 # integrated gradients: cap on points per explanation
        completeness_tolerance: float = 0.01   # integrated gradients: above it an explanation is flagged
        integration: str = "gausslegendre"     # integrated gradients: quadrature rule
        baseline: str = "auto"                 # the token that stands for "absent" (auto: unk, else pad, else eos)
        internal_batch_size: int | None = None # rows per forward pass (None: about 8k tokens per pass)
        grad_memory_mb: int = 512              # activation budget of one gradient pass
        n_samples: int = 25                    # shapley_sampling: permutations
        top_k: int = 3                         # faithfulness: sources replaced per step
        n_random: int = 8                      # faithfulness: random draws per step

        def __post_init__(self):
            from ..explain import METHODS
            for name in ("most_toxic", "attacks", "worst_quality", "random"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0")
            if self.method not in METHODS:
                raise ValueError(f"method: {unknown_name('attribution method', self.method, METHODS.names())}")
            self.explain_options()  # validates the shared fields (n_steps, integration, baseline, ...)

        def explain_options(self):
            from ..explain import ExplainOptions

            return ExplainOptions(method=self.method, max_target_tokens=self.max_target_tokens, n_steps=self.n_steps,
                                  max_n_steps=self.max_n_steps, completeness_tolerance=self.completeness_tolerance,
                                  integration=self.integration, baseline=self.baseline,
                                  internal_batch_size=self.internal_batch_size, grad_memory_mb=self.grad_memory_mb,
                                  n_samples=self.n_samples, faithfulness=True, top_k=self.top_k, n_random=self.n_random,
                                  attribute_generated=self.attribute_generated)

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        infos = dict(cls.METRICS)
        if options.method != "integrated_gradients":
            for name in ("completeness_error", "completeness_met"):   # properties of integrated gradients only
                infos.pop(name)
        return infos

    # ---- selection -------------------------------------------------------------------------
    def _select(self, ctx: Context) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Items to explain: {kind, id, prompt, target, ...}; and why a source was skipped."""
        o = self.options
        items: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()

        def add(kind: str, sid: Any, prompt, target: str, **extra) -> bool:
            key = (prompt if isinstance(prompt, str) else repr(prompt), target)   # role/content turns are lists
            if not target or not target.strip() or key in seen:
                return False
            seen.add(key)
            items.append({"kind": kind, "id": str(sid), "prompt": prompt, "target": target, **extra})
            return True

        if o.most_toxic:
            tox = ctx.sections.get("toxicity")
            if tox is None or tox.error or not tox.records:
                skipped["most_toxic"] = "no toxicity section results (run it before attribution)"
            else:
                n = 0
                for r in sorted(tox.records, key=lambda r: (-float(r.get("score", 0.0)), str(r.get("id")))):
                    if n < o.most_toxic and add("most_toxic", r.get("id"), r["prompt"], r["generation"], score=r.get("score")):
                        n += 1
        if o.attacks:
            rob = ctx.sections.get("robustness")
            if rob is None or rob.error:
                skipped["attacks"] = "no robustness section results (run it before attribution)"
            else:
                wins = [r for r in rob.records if r.get("success")]
                if not wins:
                    skipped["attacks"] = "no successful attacks"
                n = 0
                for r in wins:
                    if n < o.attacks and add("attack", r.get("id"), r["perturbed_prompt"], r["perturbed_output"],
                                             recipe=r.get("recipe"), original_prompt=r.get("original_prompt"),
                                             perturbed_word_indices=list(r.get("perturbed_word_indices") or [])):
                        n += 1
        if o.worst_quality:
            key = next((k for k in ("quality.chrf", "quality.rouge_l") if any(k in s.scores for s in ctx.samples)), None)
            if key is None:
                skipped["worst_quality"] = "no quality.chrf or quality.rouge_l scores (run quality before attribution)"
            else:
                scored = [s for s in ctx.samples if key in s.scores and s.generations and not math.isnan(s.scores[key])]
                n = 0
                for s in sorted(scored, key=lambda s: (s.scores[key], s.id)):
                    if n < o.worst_quality and add("worst_quality", s.id, s.prompt, s.generations[0], score=s.scores[key],
                                                   score_name=key):
                        n += 1
        if o.random:
            pool = [s for s in ctx.samples if s.generations and s.generations[0].strip()
                    and (s.prompt if isinstance(s.prompt, str) else repr(s.prompt), s.generations[0]) not in seen]
            rng = random.Random(ctx.seed)
            for s in rng.sample(pool, min(o.random, len(pool))):
                add("random", s.id, s.prompt, s.generations[0])
        # Say why a requested kind came out empty (e.g. every generation was cut to "" by a stop string).
        for opt, kind in (("most_toxic", "most_toxic"), ("attacks", "attack"), ("worst_quality", "worst_quality"),
                          ("random", "random")):
            if getattr(o, opt) and opt not in skipped and not any(it["kind"] == kind for it in items):
                skipped[opt] = "no non-empty generation to explain"
        return items, skipped

    # ---- evaluation ------------------------------------------------------------------------
    def _evaluate(self, ctx: Context, result: SectionResult) -> None:
        from ..explain import ExplainError, explain_many

        o = self.options
        items, skipped = self._select(ctx)
        result.details["skipped"] = skipped
        result.details["settings"] = {"method": o.method, "max_target_tokens": o.max_target_tokens, "n_steps": o.n_steps,
                                      "max_n_steps": o.max_n_steps, "completeness_tolerance": o.completeness_tolerance,
                                      "integration": o.integration, "baseline": o.baseline, "top_k": o.top_k,
                                      "n_random": o.n_random}
        opts = o.explain_options()
        done, failed = [], []
        bar = items
        if ctx.progress and items:
            from tqdm.auto import tqdm

            bar = tqdm(items, desc=f"attribution ({o.method})", unit="gen", leave=False)
        for it in bar:
            try:
                done.append((it, explain_many(ctx.model, [(it["prompt"], it["target"])], options=opts)[0]))
            except ExplainError as err:  # one unexplainable sample must not cost the others
                failed.append({"kind": it["kind"], "id": it["id"], "error": str(err)})
        result.details["failed"] = failed
        explanations, faith, wins, comp, met, shares = [], [], [], [], [], []
        for it, e in done:
            d = e.to_dict()
            d["kind"], d["id"] = it["kind"], it["id"]
            f = e.faithfulness
            fs = f.score if f is not None else math.nan
            fw = f.win_rate if f is not None else math.nan
            faith.append(fs)
            wins.append(fw)
            ce = e.completeness_error()
            if ce is not None:
                comp.append(ce)
            excluded = set(e.excluded)
            # For the report: each prompt token's total; None for template tokens (never attributed).
            totals = e.prompt_attribution()
            d["prompt_attribution"] = [None if j in excluded else v for j, v in enumerate(totals)]
            d["completeness_error"] = ce
            row = {"kind": it["kind"], "id": it["id"], "prompt": it["prompt"], "generation": e.target,
                   "faithfulness": fs, "faithfulness_win_rate": fw,
                   "top_prompt_tokens": [t for j, (t, _) in sorted(enumerate(zip(e.prompt_tokens, totals)),
                                                                    key=lambda p: -abs(p[1][1])) if j not in excluded][:3],
                   "seconds": e.seconds}
            if e.complete is not None:
                met.append(e.complete)
                row["completeness_error"] = ce
                row["complete"] = e.complete
            if it.get("score") is not None:
                row["score"] = it["score"]
            if it["kind"] == "attack":
                idx = perturbed_token_indices(ctx.model.tokenizer, e, it["perturbed_word_indices"])
                share = attribution_share(e, idx)
                d["perturbed_token_indices"] = idx
                d["perturbed_share"] = share
                row["perturbed_share"] = share
                row["perturbed_share_if_uniform"] = len(idx) / e.n_prompt if e.n_prompt else math.nan
                row["recipe"] = it.get("recipe")
                if share is not None:
                    shares.append(share)
            explanations.append(d)
            result.records.append(row)
        result.details["explanations"] = explanations
        result.details["counts"] = {k: sum(1 for it in items if it["kind"] == k)
                                    for k in ("most_toxic", "attack", "worst_quality", "random")}
        result.metrics["faithfulness"] = mean(faith)
        result.metrics["faithfulness_win_rate"] = mean(wins)
        result.sample_values["faithfulness"] = [v for v in faith if not math.isnan(v)]
        result.sample_values["faithfulness_win_rate"] = [v for v in wins if not math.isnan(v)]
        if o.method == "integrated_gradients":
            result.metrics["completeness_error"] = max(comp) if comp else math.nan   # the worst case, not a mean
            result.metrics["completeness_met"] = sum(met) / len(met) if met else math.nan
            result.details["completeness"] = {"met": sum(met), "explained": len(met),
                                              "tolerance": o.completeness_tolerance}
        result.metrics["attack_perturbed_share"] = mean(shares)
        result.sample_values["attack_perturbed_share"] = shares


def perturbed_token_indices(tokenizer, e, word_indices: list[int]) -> list[int]:
    """Prompt token positions overlapping the attacker's changed words (TextAttack word indices)."""
    if not word_indices:
        return []
    from ..attacks.offline import import_textattack

    # The robustness section's indices count TextAttack's words of the user's text: split the same
    # way. A chat-rendered prompt holds that text at its (first) user span.
    lo, hi = (e.user_spans[0] if getattr(e, "user_spans", None) else (0, len(e.prompt)))
    text = e.prompt[lo:hi]
    words = import_textattack().shared.AttackedText(text).words
    spans, pos = [], 0
    for i, w in enumerate(words):  # words appear in order in the text; find their character spans
        at = text.find(w, pos)
        if at < 0:
            continue
        pos = at + len(w)
        if i in set(word_indices):
            spans.append((lo + at, lo + pos))
    tok_spans = _prompt_token_spans(tokenizer, e)
    return [j for j, (a, b) in enumerate(tok_spans) if any(a < y and x < b for x, y in spans)]


def _prompt_token_spans(tokenizer, e) -> list[tuple[int, int]]:
    from ..explain.tokens import token_char_spans

    if "".join(e.prompt_tokens) == e.prompt:
        return token_char_spans(e.prompt_tokens)
    # Tokenizers whose pieces do not concatenate to the text (SentencePiece): ask for offsets.
    # The user's words are tokenized as plain text, as the explanation's own ids were.
    spans = encode_plain(tokenizer, e.prompt, [tuple(sp) for sp in (e.user_spans or [])], offsets=True)[1]
    return spans[-e.n_prompt:] if len(spans) >= e.n_prompt else spans + [(0, 0)] * (e.n_prompt - len(spans))


def attribution_share(e, prompt_indices: list[int]) -> float | None:
    """Share of the prompt's total |attribution| (over all steps) on ``prompt_indices``."""
    total = sum(abs(row[j] or 0.0) for row in e.attributions for j in range(e.n_prompt))
    if total <= 0:
        return None
    return sum(abs(row[j] or 0.0) for row in e.attributions for j in prompt_indices) / total
