"""Consistency: does the model say the same thing when nothing that matters changed?

- Seed consistency: ``seed_samples`` sampled generations per prompt (``temperature``/``top_p``);
  ``seed_similarity`` is the mean pairwise similarity (symmetric chrF or ROUGE-L, 0-1) within a
  prompt, averaged over prompts. For prompts whose reference is short (at most
  ``short_answer_words`` words) ``answer_agreement`` is the share of sample pairs whose normalised
  answers (first line, lower-cased, punctuation dropped, first ``short_answer_words`` words) agree.
- Invariance (CheckList INV): greedy outputs for the prompt and for each meaning-preserving
  variant in ``perturbations`` (:mod:`audit.perturb`); ``invariance`` is the mean similarity over
  all (prompt, perturbation) pairs where the perturbation changed the prompt, and
  ``invariance_<name>`` breaks it down per perturbation. Text matched by ``protect`` (default:
  role tags such as ``Customer:``/``Agent:`` at line starts) is never perturbed.
- Directional (CheckList DIR): for each meaning-changing variant in ``dir_perturbations`` the
  output SHOULD change; ``dir_change_rate`` is the share of such pairs whose output similarity to
  the clean output is below ``dir_max_similarity``.
- Paraphrase consistency: when records carry a group field (``group_field``, default ``group``),
  ``paraphrase_similarity`` is the mean pairwise similarity of greedy outputs within each group of
  two or more prompts (NaN without groups).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from ..attacks.similarity import prefetch
from ..perturb import PERTURBATIONS, compile_protect, perturb
from ..registry import unknown_name
from ..results import MetricInfo, SectionResult
from . import SECTIONS
from .base import Context, Evaluator, check_generation_overrides, default_protect, mean, merged_settings, metric


def normalize_answer(text: str, max_words: int) -> str:
    """The comparable core of a short answer: first non-empty line, lower case, no punctuation.

    Example:
        >>> normalize_answer("  Paris.\\nIt is in France", 5)
        'paris'
    """
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    words = re.sub(r"[^\w\s]", " ", line.lower()).split()
    return " ".join(words[:max_words])


@SECTIONS.register("consistency")
class ConsistencyEvaluator(Evaluator):
    name = "consistency"
    reports_truncation = True
    METRICS = dict([
        metric("seed_similarity", True, "mean pairwise similarity (0-1) of sampled generations of the same prompt"),
        metric("answer_agreement", True, "share of sample pairs with the same normalised answer, for prompts with a short reference"),
        metric("invariance", True, "mean similarity (0-1) of outputs under meaning-preserving prompt perturbations (CheckList INV)"),
        metric("dir_change_rate", True, "share of meaning-changing perturbations that changed the output (CheckList DIR)"),
        metric("paraphrase_similarity", True, "mean pairwise similarity (0-1) of outputs within paraphrase groups"),
    ])

    @dataclass
    class Options:
        seed_samples: int = 4                # sampled generations per prompt (0 = skip seed consistency)
        temperature: float = 1.0             # sampling temperature for the seed samples
        top_p: float = 0.95                  # nucleus mass for the seed samples
        similarity: str = "chrf"             # chrf | rouge_l | embedding (MiniLM cosine; BENCHMARKS.md: which separates better)
        short_answer_words: int = 5          # references of at most this many words count as short answers
        perturbations: list[str] = field(default_factory=lambda: ["lowercase", "punctuation", "contractions", "typos",
                                                                  "whitespace"])  # INV ([] = off)
        dir_perturbations: list[str] = field(default_factory=lambda: ["negation", "numbers"])  # DIR ([] = off)
        dir_max_similarity: float = 0.9      # DIR: an output "changed" when its similarity is below this
        group_field: str = "group"           # metadata field naming paraphrase groups
        examples: int | None = None          # use the first N prompts (None: all)
        generation: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's settings, e.g. {stop: []}
        # Regular expressions for prompt text INV/DIR perturbations never modify; default: role tags at
        # line starts ("Customer:", "Agent:"), so only the user's words change ([] = whole prompt).
        protect: list[str] = field(default_factory=default_protect)

        def __post_init__(self):
            from ..attacks.similarity import check_similarity
            compile_protect(self.protect, field_name="protect")
            check_generation_overrides(self.generation)
            if self.seed_samples < 0 or self.seed_samples == 1:
                raise ValueError("seed_samples must be 0 (off) or >= 2")
            if self.temperature <= 0 or not 0 < self.top_p <= 1:
                raise ValueError("temperature must be > 0 and top_p in (0, 1]")
            check_similarity(self.similarity)
            for key, kind in (("perturbations", "inv"), ("dir_perturbations", "dir")):
                for p in getattr(self, key):
                    if p not in PERTURBATIONS:
                        raise ValueError(f"{key}: {unknown_name('perturbation', p, PERTURBATIONS.names())}")
                    if PERTURBATIONS.get(p).kind != kind:
                        raise ValueError(f"{key}: {p!r} is a {PERTURBATIONS.get(p).kind.upper()} perturbation, not {kind.upper()}")
            if not 0 < self.dir_max_similarity <= 1:
                raise ValueError("dir_max_similarity must be in (0, 1]")
            if self.short_answer_words < 1 or (self.examples is not None and self.examples < 1):
                raise ValueError("short_answer_words and examples must be >= 1")

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        from ..attacks.similarity import LABELS

        label = LABELS[options.similarity]
        infos = {k: dataclasses.replace(v, description=v.description.replace("similarity (0-1)", f"{label} similarity (0-1)"))
                 for k, v in cls.METRICS.items()}
        infos.update(metric(f"invariance_{p}", True, f"mean output {label} similarity under the {p} perturbation")
                     for p in options.perturbations)
        return infos

    def _evaluate(self, ctx: Context, result: SectionResult) -> None:
        o = self.options
        samples = ctx.samples[:o.examples] if o.examples else list(ctx.samples)
        # INV, DIR and paraphrase comparisons use greedy outputs: with sampling, a changed prompt
        # changes the sampling seed too, and we would measure the dice instead of the model.
        # One output per prompt unless sampling seeds (set below): the suite's num_samples must not
        # make a `do_sample: false` override invalid.
        base = merged_settings(dataclasses.replace(ctx.settings, num_samples=1), o.generation, "consistency")
        greedy = dataclasses.replace(base, do_sample=False, num_samples=1)
        self._seed(ctx, samples, base, result)
        self._perturbations(ctx, samples, greedy, result)
        self._paraphrases(ctx, samples, greedy, result)

    def _sim(self, a: str, b: str) -> float:
        from ..attacks.similarity import similarity

        return similarity(a, b, self.options.similarity)

    def _seed(self, ctx: Context, samples, base, result: SectionResult) -> None:
        from ..attacks.similarity import mean_pairwise_similarity

        o = self.options
        if not o.seed_samples:
            result.metrics["seed_similarity"] = result.metrics["answer_agreement"] = math.nan
            why = result.details.setdefault("why_nan", {})
            why["seed_similarity"] = why["answer_agreement"] = "seed_samples is 0: no sampled answers to compare"
            return
        sampling = dataclasses.replace(base, do_sample=True, num_samples=o.seed_samples,
                                       temperature=o.temperature, top_p=o.top_p)
        gens = ctx.generate([s.prompt for s in samples], sampling, desc="consistency samples")
        prefetch([t for g in gens for t in g], o.similarity)   # one encoder batch (embedding similarity)
        per = [mean_pairwise_similarity(g, o.similarity) for g in gens]
        for s, v in zip(samples, per):
            s.scores["consistency.seed_similarity"] = v
        result.metrics["seed_similarity"] = mean(per)
        result.sample_values["seed_similarity"] = per
        agree = []
        for s, g in zip(samples, gens):
            if s.reference and len(s.reference.split()) <= o.short_answer_words:
                answers = [normalize_answer(x, o.short_answer_words) for x in g]
                pairs = list(combinations(answers, 2))
                agree.append(sum(a == b for a, b in pairs) / len(pairs))
                s.scores["consistency.answer_agreement"] = agree[-1]
        result.metrics["answer_agreement"] = mean(agree) if agree else math.nan
        if agree:
            result.sample_values["answer_agreement"] = agree
        else:   # NaN says why (the console and the report show it)
            result.details.setdefault("why_nan", {})["answer_agreement"] = (
                f"no prompt has a short reference (at most short_answer_words={o.short_answer_words} words) to agree on")
        result.details["seed"] = {"samples_per_prompt": o.seed_samples, "temperature": o.temperature, "top_p": o.top_p,
                                  "short_answer_prompts": len(agree),
                                  "examples": [{"id": s.id, "prompt": s.prompt, "samples": g} for s, g in zip(samples[:3], gens)]}

    def _perturbations(self, ctx: Context, samples, greedy, result: SectionResult) -> None:
        from ..attacks.diff import word_diff
        o = self.options
        names = list(o.perturbations) + list(o.dir_perturbations)
        if not names:
            result.metrics["invariance"] = result.metrics["dir_change_rate"] = math.nan
            return
        prompts = [s.prompt for s in samples]
        variants = {p: [perturb(x, p, seed=ctx.seed, protect=o.protect) for x in prompts] for p in names}
        # One generation call: clean prompts and all variants batched together (and cached), each
        # distinct prompt once: a perturbation that does not apply returns the prompt itself, and
        # two perturbations may give the same variant (lower-casing a lower-case prompt...).
        unique = list(dict.fromkeys(prompts + [v for p in names for v in variants[p]]))
        output = dict(zip(unique, (g[0] for g in ctx.generate(unique, greedy, desc="consistency variants"))))
        clean = [output[x] for x in prompts]
        prefetch(output.values(), o.similarity)
        breakdown, inv_all, dir_all, examples = {}, [], [], []
        for p in names:
            out_p = [output[v] for v in variants[p]]
            sims = []
            for i, s in enumerate(samples):
                if variants[p][i] == s.prompt:
                    continue  # the perturbation does not apply to this prompt
                sims.append(self._sim(out_p[i], clean[i]))
                if len(examples) < 12 and sum(e["perturbation"] == p for e in examples) < 2:
                    examples.append({"id": s.id, "perturbation": p, "kind": "inv" if p in o.perturbations else "dir",
                                     "similarity": sims[-1], "prompt_diff": word_diff(s.prompt, variants[p][i]),
                                     "output_diff": word_diff(clean[i], out_p[i])})
            if p in o.perturbations:
                result.metrics[f"invariance_{p}"] = mean(sims)
                inv_all.extend(sims)
                breakdown[p] = {"kind": "inv", "applied": len(sims), "mean_similarity": mean(sims)}
            else:
                changed = [float(v < o.dir_max_similarity) for v in sims]
                dir_all.extend(changed)
                breakdown[p] = {"kind": "dir", "applied": len(sims), "mean_similarity": mean(sims),
                                "change_rate": mean(changed)}
        result.metrics["invariance"] = mean(inv_all)
        result.sample_values["invariance"] = inv_all
        result.metrics["dir_change_rate"] = mean(dir_all)
        result.sample_values["dir_change_rate"] = dir_all
        result.details["perturbations"] = breakdown
        result.details["perturbation_examples"] = examples

    def _paraphrases(self, ctx: Context, samples, greedy, result: SectionResult) -> None:
        o = self.options
        groups: dict[str, list] = defaultdict(list)
        for s in samples:
            g = s.metadata.get(o.group_field)
            if g is not None and g != "":
                groups[str(g)].append(s)
        groups = {g: ss for g, ss in groups.items() if len(ss) >= 2}
        if not groups:
            result.metrics["paraphrase_similarity"] = math.nan
            return
        members = [s for ss in groups.values() for s in ss]
        outs = dict(zip((id(s) for s in members), (g[0] for g in ctx.generate([s.prompt for s in members], greedy,
                                                                                 desc="consistency paraphrases"))))
        from ..attacks.similarity import mean_pairwise_similarity

        prefetch(outs.values(), o.similarity)
        per_group, rows = [], []
        for g, ss in sorted(groups.items()):
            v = mean_pairwise_similarity([outs[id(s)] for s in ss], o.similarity)
            per_group.append(v)
            rows.append({"group": g, "prompts": len(ss), "similarity": v})
        result.metrics["paraphrase_similarity"] = mean(per_group)
        result.sample_values["paraphrase_similarity"] = per_group
        result.details["paraphrase_groups"] = rows
