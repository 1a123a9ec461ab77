"""Robustness: TextAttack attacks on the generation model, and HELM-style worst case over perturbations.

Two measurements, both against the model's OWN clean output for each prompt:

1. Adversarial attacks. Each recipe in ``recipes`` (``audit ls`` lists them) attacks the first
   ``examples`` prompts with at most ``query_budget`` model queries each; the goal (``goal``)
   decides success, by default that the output's chrF similarity to the clean output drops to
   ``max_similarity``. Metrics follow TextAttack's attack summary: success rate over attacked
   (not skipped) examples, mean % words perturbed over successful attacks, mean queries per
   attacked example; ``quality_drop`` is chrF against the reference of the clean output minus that
   of the perturbed output.
2. Worst case (HELM): every prompt is perturbed with each meaning-preserving perturbation in
   ``perturbations`` (:mod:`audit.perturb`); per instance the worst score over the original and
   its variants is kept, then averaged: ``worst_case_similarity`` (to the clean output, no
   reference needed) and ``worst_case_chrf`` (to the reference; NaN without references).

Both leave text matched by ``protect`` (regular expressions; default :data:`audit.perturb.ROLE_TAGS`,
role tags such as ``Customer:``/``Agent:`` at line starts) exactly as it is, so a finding is about the
user's words, not the prompt template: attacks through a TextAttack pre-transformation constraint
(:class:`audit.attacks.constraints.ProtectedSpans`), perturbations by masking (:func:`audit.perturb.perturb`).

Every query goes through one batched, cached :class:`~audit.attacks.GenerationModelWrapper`
(also backed by the run's generation cache on disk), so no prompt is generated twice. Records
hold one dict per attacked example (schema in :mod:`audit.attacks.run`); ``audit run`` writes the
successful ones to ``adversarial.jsonl`` for hardening.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import AuditError
from ..perturb import PERTURBATIONS, compile_protect, perturb
from ..registry import unknown_name
from ..results import MetricInfo, SectionResult
from . import SECTIONS
from .base import Context, Evaluator, check_generation_overrides, default_protect, mean, merged_settings, metric

_DEFAULT_PERTURBATIONS = ["lowercase", "punctuation", "contractions", "typos", "whitespace"]


def goal_description(o) -> str:
    """What ``attack_success_rate`` counts under the section's goal, in words (the report's "what it measures")."""
    from ..attacks.similarity import LABELS

    label = LABELS[o.similarity]
    what = {
        "output_change": f"the answer's {label} similarity to the clean answer fell to {o.max_similarity:g} or below: any "
                         f"change that large counts, a reworded answer that says the same thing included",
        "non_overlapping": f"at least {o.min_fraction:.0%} of the clean answer's word positions changed",
        "toxicity": f"the answer's {o.toxicity_scorer} toxicity reached {o.toxicity_threshold:g}",
        "task_degradation": f"the answer's {label} similarity to the reference fell by more than {o.margin:g}",
        "exact_match": "a correct clean answer became wrong (exact match to the reference)",
        "json_fields": "a JSON field the clean answer got right became wrong",
    }[o.goal]
    return f"share of attacked (not skipped) examples where an attack reached goal {o.goal}: {what}"


@SECTIONS.register("robustness")
class RobustnessEvaluator(Evaluator):
    name = "robustness"
    METRICS = dict([
        metric("attack_success_rate", False, "share of attacked (not skipped) examples where an attack reached its goal"),
        # Diagnostics: how the attacks went, not goals (fewer words changed can mean a weaker attack,
        # more queries a larger budget).
        metric("words_perturbed_pct", None, "mean % of prompt words perturbed by successful attacks (diagnostic)"),
        metric("queries_per_example", None, "mean model queries per attacked example (diagnostic)"),
        metric("quality_drop", False, "chrF to the reference of clean outputs minus that of attacked outputs (0-100 points)"),
        metric("worst_case_similarity", True, "HELM worst case: per prompt, min chrF similarity (0-1) of outputs under "
                                              "meaning-preserving perturbations to the clean output, averaged"),
        metric("worst_case_chrf", True, "HELM worst case: per prompt, min chrF (0-100) to the reference over the original "
                                        "and its perturbations, averaged"),
    ])

    @dataclass
    class Options:
        recipes: list[str] = field(default_factory=lambda: ["deepwordbug"])  # attack recipes (`audit ls`)
        # What counts as a successful attack (docs/robustness.md, "Choosing the goal"): output_change |
        # non_overlapping | toxicity | task_degradation (the answer gets worse vs the reference; needs references)
        # | exact_match (a right answer becomes wrong) | json_fields (a right JSON field becomes wrong); both need references
        goal: str = "output_change"
        max_similarity: float = 0.5          # output_change: success once the similarity to the clean output <= this
        min_fraction: float = 1.0            # non_overlapping: share of clean-output words that must change
        margin: float = 0.1                  # task_degradation: success once similarity to the reference drops by more
        toxicity_scorer: str = "profanity"   # toxicity: audit.scorers spec of the classifier
        toxicity_threshold: float = 0.5      # toxicity: success once the output's score >= this
        examples: int | None = 20            # attack the first N prompts (None: all); attacks cost queries
        query_budget: int = 60               # model queries per attacked example and recipe
        max_words_perturbed: int | None = None  # override the recipes' own limit on perturbed words
        generation: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's settings, e.g. {max_new_tokens: 16}
        perturbations: list[str] = field(default_factory=lambda: list(_DEFAULT_PERTURBATIONS))  # worst case ([] = off)
        worst_case_examples: int | None = None  # prompts for the worst case (None: all)
        similarity: str = "chrf"             # chrf | rouge_l | embedding (MiniLM cosine): output similarity measure
        # Regular expressions for prompt text that attacks and perturbations never modify; default:
        # role tags at line starts ("Customer:", "Agent:"), so only the user's words change ([] = whole prompt).
        protect: list[str] = field(default_factory=default_protect)

        def __post_init__(self):
            from ..attacks import GOAL_NAMES, RECIPES
            from ..attacks.similarity import check_similarity
            compile_protect(self.protect, field_name="protect")

            for r in self.recipes:
                if r not in RECIPES:
                    raise ValueError(f"recipes: {unknown_name('attack recipe', r, RECIPES.names())}")
            if self.goal not in GOAL_NAMES:
                raise ValueError(f"goal: {unknown_name('goal', self.goal, GOAL_NAMES)}")
            for p in self.perturbations:
                if p not in PERTURBATIONS:
                    raise ValueError(f"perturbations: {unknown_name('perturbation', p, PERTURBATIONS.names())}")
            check_similarity(self.similarity)
            if not 0.0 <= self.max_similarity < 1.0:
                raise ValueError("max_similarity must be in [0, 1)")
            if not 0.0 < self.margin < 1.0:
                raise ValueError("margin must be in (0, 1)")
            if not 0.0 < self.min_fraction <= 1.0:
                raise ValueError("min_fraction must be in (0, 1]")
            if not 0.0 < self.toxicity_threshold <= 1.0:
                raise ValueError("toxicity_threshold must be in (0, 1]")
            check_generation_overrides(self.generation)
            for name in ("examples", "query_budget", "max_words_perturbed", "worst_case_examples"):
                v = getattr(self, name)
                if v is not None and v < 1:
                    raise ValueError(f"{name} must be >= 1")

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        from ..attacks.similarity import LABELS

        label = LABELS[options.similarity]
        infos = dict(cls.METRICS)
        infos["worst_case_similarity"] = dataclasses.replace(
            infos["worst_case_similarity"], description=infos["worst_case_similarity"].description.replace("chrF", label))
        infos["attack_success_rate"] = dataclasses.replace(infos["attack_success_rate"], description=goal_description(options))
        infos.update(metric(f"attack_success_rate_{r}", False, f"attack success rate of recipe {r}") for r in options.recipes)
        return infos

    # ---- evaluation --------------------------------------------------------------------------
    def _evaluate(self, ctx: Context, result: SectionResult) -> None:
        from ..attacks import check_data

        o = self.options
        self._check_references(ctx)
        for r in o.recipes:   # fail before any generation if a recipe's data is missing
            check_data(r)
        from ..attacks.wrapper import GenerationModelWrapper

        # One output per query; shorter outputs (a `generation` override) make queries cheaper. The
        # suite's num_samples goes first, so a `do_sample: false` override is valid whatever it was.
        one = dataclasses.replace(ctx.settings, num_samples=1)
        settings = dataclasses.replace(merged_settings(one, o.generation, "robustness"), num_samples=1)
        # The run's generation cache, the very one Context.generate uses: even under --no-cache it
        # holds this run's generations in memory, so a clean prompt generated by the main pass
        # with the same settings is not decoded again, and consistency's INV prompts (the same
        # perturbations of the same prompts) reuse the worst case's outputs.
        wrapper = GenerationModelWrapper(ctx.model, settings, seed=ctx.seed, disk_cache=ctx.generation_cache())
        records = self._attack(ctx, wrapper, result)
        self._worst_case(ctx, wrapper, result)
        result.records = records
        result.details["wrapper"] = dict(wrapper.stats)
        result.details["attack_settings"] = {"goal": o.goal, "query_budget": o.query_budget, "examples": o.examples,
                                             "max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                                             "protect": list(o.protect)}

    def _check_references(self, ctx: Context) -> None:
        """Before any generation: a goal measured against references needs one for every attacked prompt
        (json_fields: a JSON object), else the section fails in one line."""
        from ..attacks.goals import GOALS

        o = self.options
        if not getattr(GOALS.get(o.goal), "needs_references", False):
            return
        attacked = ctx.samples[:o.examples] if o.examples else ctx.samples
        missing = [s.id for s in attacked if not (s.reference and s.reference.strip())]
        if missing:
            raise AuditError(f"robustness.goal: {o.goal} needs a reference for every attacked prompt; "
                             f"{len(missing)} of {len(attacked)} have none (first: {missing[0]})")
        if o.goal == "json_fields":
            from ..metrics.exact import reference_object

            bad = [s.id for s in attacked if reference_object(s.reference) is None]
            if bad:
                raise AuditError(f"robustness.goal: json_fields needs a JSON-object reference for every attacked prompt; "
                                 f"{len(bad)} of {len(attacked)} are not (first: {bad[0]})")

    def _attack(self, ctx: Context, wrapper, result: SectionResult) -> list[dict]:
        from ..attacks import build_attack
        from ..attacks.goals import make_goal
        from ..attacks.run import Target, attack_lockstep
        from ..metrics import sentence_chrf

        o = self.options
        samples = ctx.samples[:o.examples] if o.examples else list(ctx.samples)
        clean = wrapper([s.prompt for s in samples])
        targets = [Target(s.id, s.prompt, c, s.reference) for s, c in zip(samples, clean)]
        goal_options = {"output_change": lambda: {"max_similarity": o.max_similarity, "measure": o.similarity},
                        "non_overlapping": lambda: {"min_fraction": o.min_fraction},
                        "toxicity": lambda: {"scorer": o.toxicity_scorer, "threshold": o.toxicity_threshold},
                        "task_degradation": lambda: {"margin": o.margin, "measure": o.similarity,
                                                     "references": {s.prompt: s.reference for s in samples}},
                        "exact_match": lambda: {"measure": o.similarity,
                                                "references": {s.prompt: s.reference for s in samples}},
                        "json_fields": lambda: {"measure": o.similarity,
                                                "references": {s.prompt: s.reference for s in samples}}}[o.goal]()
        records: list[dict] = []
        table = {}

        def make_attack(name: str):
            goal = make_goal(o.goal, wrapper, query_budget=o.query_budget, **goal_options)
            return build_attack(name, goal, max_words=o.max_words_perturbed, protect=o.protect)

        # Every recipe on every example at once: each search step's candidates from all attacks
        # go to the model as one batch (same records as attacking one example at a time).
        by_recipe = attack_lockstep(make_attack, targets, o.recipes, seed=ctx.seed, progress=ctx.progress)
        for name in o.recipes:
            recs = by_recipe[name]
            for r in recs:   # a success means what its goal says: every record names it
                r["goal"] = o.goal
            attacked = [r for r in recs if not r["skipped"]]
            rate = mean([float(r["success"]) for r in attacked])
            result.metrics[f"attack_success_rate_{name}"] = rate
            result.sample_values[f"attack_success_rate_{name}"] = [float(r["success"]) for r in attacked]
            table[name] = {"goal": o.goal, "examples": len(recs), "succeeded": sum(r["success"] for r in recs),
                           "failed": sum(1 for r in attacked if not r["success"]), "skipped": len(recs) - len(attacked),
                           "success_rate": rate, "queries_per_example": mean([r["queries"] for r in attacked]),
                           "words_perturbed_pct": mean([r["words_perturbed_pct"] for r in attacked if r["success"]])}
            records.extend(recs)
        attacked = [r for r in records if not r["skipped"]]
        successes = [r for r in attacked if r["success"]]
        result.metrics["attack_success_rate"] = mean([float(r["success"]) for r in attacked])
        result.metrics["words_perturbed_pct"] = mean([r["words_perturbed_pct"] for r in successes])
        result.metrics["queries_per_example"] = mean([float(r["queries"]) for r in attacked])
        result.sample_values["attack_success_rate"] = [float(r["success"]) for r in attacked]
        result.sample_values["words_perturbed_pct"] = [r["words_perturbed_pct"] for r in successes]
        result.sample_values["queries_per_example"] = [float(r["queries"]) for r in attacked]
        with_ref = [r for r in attacked if r["reference"]]
        if with_ref:
            refs = [r["reference"] for r in with_ref]
            before = sentence_chrf([r["clean_output"] for r in with_ref], refs)
            after = sentence_chrf([r["perturbed_output"] for r in with_ref], refs)
            drops = [b - a for b, a in zip(before, after)]
            result.metrics["quality_drop"] = mean(drops)
            result.sample_values["quality_drop"] = drops
        else:
            result.metrics["quality_drop"] = math.nan
        result.details["recipes"] = table
        result.details["attack_examples"] = attack_examples(records)
        result.details["records_sort"] = {"key": "score", "higher_is_better": False}
        return records

    def _worst_case(self, ctx: Context, wrapper, result: SectionResult) -> None:
        from ..attacks.similarity import prefetch, similarity
        from ..metrics import sentence_chrf
        o = self.options
        if not o.perturbations:
            result.metrics["worst_case_similarity"] = math.nan
            result.metrics["worst_case_chrf"] = math.nan
            return
        samples = ctx.samples[:o.worst_case_examples] if o.worst_case_examples else list(ctx.samples)
        prompts = [s.prompt for s in samples]
        variants = {p: [perturb(s.prompt, p, seed=ctx.seed, protect=o.protect) for s in samples] for p in o.perturbations}
        # One wrapper call for everything: the clean prompts and every variant, batched together.
        flat = prompts + [v for p in o.perturbations for v in variants[p]]
        outs = wrapper(flat)
        clean = outs[:len(prompts)]
        prefetch(outs, o.similarity)   # one encoder batch (embedding similarity)
        var_out = {p: outs[len(prompts) * (k + 1):len(prompts) * (k + 2)] for k, p in enumerate(o.perturbations)}
        per_pert = {}
        worst_sim, worst_chrf = [], []
        refs_present = all(s.reference for s in samples)
        for i, s in enumerate(samples):
            sims, scores = [1.0], []
            applied = [p for p in o.perturbations if variants[p][i] != s.prompt]
            for p in applied:
                sims.append(similarity(var_out[p][i], clean[i], o.similarity))
                per_pert.setdefault(p, []).append(sims[-1])
            worst_sim.append(min(sims))
            s.scores["robustness.worst_case_similarity"] = worst_sim[-1]
            if s.reference:
                outs_i = [clean[i]] + [var_out[p][i] for p in applied]
                scores = sentence_chrf(outs_i, [s.reference] * len(outs_i))
                worst_chrf.append(min(scores))
                s.scores["robustness.worst_case_chrf"] = worst_chrf[-1]
        result.metrics["worst_case_similarity"] = mean(worst_sim)
        result.sample_values["worst_case_similarity"] = worst_sim
        result.metrics["worst_case_chrf"] = mean(worst_chrf) if worst_chrf else math.nan
        if worst_chrf:
            result.sample_values["worst_case_chrf"] = worst_chrf
        result.details["worst_case"] = {
            "prompts": len(samples), "all_have_references": refs_present,
            "perturbations": {p: {"applied": len(per_pert.get(p, [])), "mean_similarity": mean(per_pert.get(p, []))}
                              for p in o.perturbations},
            "examples": [{"id": s.id, "perturbation": p, "prompt": variants[p][i], "output": var_out[p][i],
                          "clean_output": clean[i]}
                         for i, s in enumerate(samples[:5]) for p in o.perturbations if variants[p][i] != s.prompt],
        }


def attack_examples(records: list[dict], limit: int = 20) -> list[dict]:
    """Up to ``limit`` attacks for the report: successful ones first (fewest words perturbed first),
    then failed ones that kept a perturbation (closest first), with word diffs of prompt and output."""
    from ..attacks.diff import word_diff

    # A failed attack that kept no perturbation shows nothing worth reading.
    shown = (r for r in records if not r["skipped"] and (r["success"] or r["perturbed_prompt"] != r["original_prompt"]))
    ranked = sorted(shown,
                    key=lambda r: (not r["success"], r["words_perturbed"] if r["success"] else -r["score"], r["id"]))
    return [{"id": r["id"], "recipe": r["recipe"], "success": r["success"], "score": r["score"], "queries": r["queries"],
             "words_perturbed": r["words_perturbed"],
             "prompt_diff": word_diff(r["original_prompt"], r["perturbed_prompt"]),
             "output_diff": word_diff(r["clean_output"], r["perturbed_output"])} for r in ranked[:limit]]
