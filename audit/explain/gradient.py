"""Gradient methods on the input embeddings: integrated gradients, input x gradient, saliency.

Speed: per batch of interpolation points we run ONE forward over prompt + target (all steps'
log-probabilities come out of it, see :mod:`.problem`) and one backward per generated step,
weighted by the quadrature weights so that the batch sum is already the integral. Peers run a
separate forward + backward of the whole path for every generated token (inseq, Captum's
``LLMGradientAttribution``). The numbers are the same as Captum's ``LayerIntegratedGradients`` on
the embedding layer run step by step (tested to 1e-5): the interpolation points and weights are
Captum's own (``approximation_parameters``).
"""

from __future__ import annotations

import torch

from .methods import METHODS, AttributionMethod, MethodOutput
from .options import ExplainOptions
from .problem import Problem


def _quadrature(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """Captum's interpolation points and weights (its private helper: one source of truth)."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    return list(alphas(n_steps)), list(step_sizes(n_steps))


def weighted_gradients(problem: Problem, base: torch.Tensor, direction: torch.Tensor, alphas, weights,
                       rows: int) -> torch.Tensor:
    """``sum_i w_i * d f_t / d e`` at ``e = base + alpha_i * direction``, for every step t.

    Args:
        problem: the sequence and model.
        base, direction: (L, d) embeddings.
        alphas, weights: interpolation points and their weights.
        rows: interpolation points per forward pass.

    Returns:
        (T, L, d) weighted gradient sums; rows of step t are zero at positions >= n_prompt + t.
    """
    T, L = problem.n_target, problem.length
    acc = torch.zeros((T, L, base.shape[-1]), dtype=torch.float32, device=base.device)
    alphas_t = torch.tensor(alphas, dtype=base.dtype, device=base.device)
    weights_t = torch.tensor(weights, dtype=torch.float32, device=base.device)
    for start in range(0, len(alphas), rows):
        a = alphas_t[start:start + rows]
        w = weights_t[start:start + rows]
        emb = (base[None] + a[:, None, None] * direction[None]).detach().requires_grad_(True)  # (B, L, d)
        f = problem.step_scorer(emb)                  # one forward; f(t) -> (B,) log p of step t
        for t in range(T):
            ft = f(t)
            # grad_outputs=w: one backward gives the weighted gradient of every row at once.
            (g,) = torch.autograd.grad(ft, emb, grad_outputs=w.to(ft.dtype), retain_graph=t < T - 1)
            n = problem.n_sources(t)  # causal: later positions have zero gradient
            acc[t, :n] += g[:, :n].float().sum(0)
    return acc


@METHODS.register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Layer integrated gradients on the input embeddings, from the baseline token's embedding.

    Completeness: each step's scores sum to ``f(x) - f(baseline)`` up to the quadrature error,
    reported per step as the convergence delta.
    """

    name = "integrated_gradients"
    description = "layer integrated gradients on the input embeddings (complete: sums to f(x) - f(baseline))"

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        with torch.no_grad():
            x = problem.embed(problem.ids)               # (L, d)
            b = problem.embed(problem.baseline_ids())    # (L, d)
            ends = problem.logprobs_from_embeds(torch.stack([x, b])).float()  # (2, T): f(x), f(baseline)
        rows = max(1, problem.batch_rows)
        n, tol = options.n_steps, options.completeness_tolerance
        while True:
            alphas, weights = _quadrature(options.integration, n)
            acc = weighted_gradients(problem, b, x - b, alphas, weights, rows)
            scores = (acc * (x - b).float()[None]).sum(-1)   # (T, L)
            gap = relative_gap(scores.sum(-1) - (ends[0] - ends[1]), ends[0] - ends[1])
            # A sharp model can need more points than the default: refine until complete (or the cap).
            if tol is None or gap <= tol or n >= options.max_n_steps:
                break
            n = min(2 * n, options.max_n_steps)
        return MethodOutput(scores=scores, target_logprobs=ends[0], baseline_logprobs=ends[1],
                            info={"n_steps": n, "integration": options.integration})


def relative_gap(delta: torch.Tensor, diff: torch.Tensor) -> float:
    """Largest ``|delta| / max(|f(x) - f(b)|, 1e-3)`` over steps (the floor keeps 0/0 cases sane)."""
    return float((delta.abs() / diff.abs().clamp(min=1e-3)).max()) if delta.numel() else 0.0


def _plain_gradient(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings (L, d) and each step's gradient at them (T, L, d): one point, weight 1."""
    with torch.no_grad():
        x = problem.embed(problem.ids)
    return x, weighted_gradients(problem, x, torch.zeros_like(x), [0.0], [1.0], 1)


@METHODS.register("input_x_gradient")
class InputXGradient(AttributionMethod):
    """Embedding times the gradient of the step's log-probability, summed over the embedding."""

    name = "input_x_gradient"
    description = "input embedding x gradient, summed over the embedding dimension"
    uses_baseline = False

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        x, g = _plain_gradient(problem)
        return MethodOutput(scores=(g * x.float()[None]).sum(-1))


@METHODS.register("saliency")
class Saliency(AttributionMethod):
    """Gradient magnitude: the L1 norm of the gradient over the embedding (always >= 0)."""

    name = "saliency"
    description = "L1 norm of the gradient w.r.t. each input embedding (unsigned)"
    uses_baseline = False

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        _, g = _plain_gradient(problem)
        return MethodOutput(scores=g.abs().sum(-1))
