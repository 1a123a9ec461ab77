"""Perturbation methods (Captum's FeatureAblation, ShapleyValueSampling) and raw attention.

The forward function handed to Captum scores a batch of (perturbed) prompt + target sequences
and returns every step's target log-probability, shape (B, T), so Captum's multi-output support
attributes all generated tokens in the same pass: feature ablation needs one row per source
token in total, not one per (source, step). Perturbing an earlier generated token only moves
the steps after it (causality), which is what attributing to earlier generated tokens means.
"""

from __future__ import annotations

import torch

from ..errors import AuditError
from .methods import METHODS, AttributionMethod, MethodOutput
from .options import ExplainOptions
from .problem import Problem


@METHODS.register("feature_ablation")
class FeatureAblation(AttributionMethod):
    """Replace one source token with the baseline token; score = drop of each step's log-probability."""

    name = "feature_ablation"
    description = "log p drop when one source token is replaced by the baseline token (Captum FeatureAblation)"

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        from captum.attr import FeatureAblation as _FA

        pos = problem.source_positions()
        fa = _FA(problem.logprobs_from_source_ids)
        scores = fa.attribute(problem.ids[pos][None], baselines=problem.baseline_id,
                              perturbations_per_eval=problem.batch_rows)   # (T, S)
        return MethodOutput(scores=_scatter(problem, scores.reshape(problem.n_target, len(pos))))


@METHODS.register("shapley_sampling")
class ShapleySampling(AttributionMethod):
    """Shapley values estimated from random permutations of the source tokens (Captum)."""

    name = "shapley_sampling"
    description = "Shapley values by permutation sampling, absent = baseline token (Captum ShapleyValueSampling)"

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        from captum.attr import ShapleyValueSampling

        pos = problem.source_positions()
        sv = ShapleyValueSampling(problem.logprobs_from_source_ids)
        # Captum draws permutations from torch's global RNG: seed it without disturbing the caller's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            scores = sv.attribute(problem.ids[pos][None], baselines=problem.baseline_id, n_samples=options.n_samples,
                                  perturbations_per_eval=problem.batch_rows)       # (1, T, S)
        return MethodOutput(scores=_scatter(problem, scores.reshape(problem.n_target, len(pos))),
                            info={"n_samples": options.n_samples})


def _scatter(problem: Problem, scores: torch.Tensor) -> torch.Tensor:
    """(T, S) scores of the source positions -> (T, L), zero elsewhere (masked out later)."""
    out = torch.zeros((problem.n_target, problem.length), dtype=torch.float32, device=scores.device)
    out[:, problem.source_positions()] = scores.float()
    return out


@METHODS.register("attention")
class Attention(AttributionMethod):
    """Attention weights from each step's predicting position, averaged over layers and heads.

    One forward pass. Attention shows where the model looked, not what changed its output:
    read it beside a real attribution, and compare their faithfulness scores.
    """

    name = "attention"
    description = "attention of the predicting position, mean over layers and heads (one pass; not an attribution)"
    uses_baseline = False

    @torch.no_grad()
    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        model = problem.model
        impl = getattr(model.config, "_attn_implementation", None)
        switch = impl not in (None, "eager") and hasattr(model, "set_attn_implementation")
        if switch:  # fused kernels (sdpa, flash) do not return attention weights
            model.set_attn_implementation("eager")
        try:
            ids = problem.ids[None]
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, use_cache=False)
        finally:
            if switch:
                model.set_attn_implementation(impl)
        if not out.attentions:
            raise AuditError(f"attention: {type(model).__name__} returned no attention weights")
        att = torch.stack([a[0].float() for a in out.attentions]).mean(dim=(0, 1))   # (L, L) query x key
        P, T = problem.n_prompt, problem.n_target
        return MethodOutput(scores=att[P - 1:P - 1 + T])                             # (T, L)
