"""Gradient methods on the input embeddings: integrated gradients, input x gradient, saliency.

Speed: per batch of interpolation points we run ONE forward over prompt + target (all steps'
log-probabilities come out of it, see :mod:`.problem`) and one backward per generated step,
weighted by the quadrature weights so that the batch sum is already the integral. Peers run a
separate forward + backward of the whole path for every generated token (inseq, Captum's
``LLMGradientAttribution``). With a fixed number of points (``completeness_tolerance=None``) the
numbers are Captum's ``LayerIntegratedGradients`` on the embedding layer run step by step (tested
to 1e-5): the interpolation points and weights are Captum's own (``approximation_parameters``).

Completeness, adaptively. The integrand along the straight path is not always smooth at the scale
of a fixed rule: a sharply trained model switches its answer within ~0.003 of the path (the
planted test model: |df/dalpha| reaches 4,500 at one point, flat elsewhere) and a pretrained LM
(SmolLM2-135M) swings by 10 nats several times along the path, because interpolated embeddings lie
far from any real token. Doubling a global Gauss-Legendre rule pays for those features everywhere
and recomputes every point. Instead the path is cut into panels, and each panel's quadrature is
checked against the EXACT change of f across it (two forward passes at its ends, which we have
anyway): ``sum of the panel's scores - (f(end) - f(start))`` is that panel's share of the
completeness gap. Only panels that miss are bisected (one more forward at the midpoint, fresh
points on both halves); panels that are complete keep their scores. The gap of the whole
explanation is exactly the sum of the panels' gaps, so what is reported is what was computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .methods import METHODS, AttributionMethod, MethodOutput
from .options import ExplainOptions
from .problem import Problem

# Riemann rules: where the n points lie on [0, 1] (Captum's IntegratedGradients places them the same way).
_RIEMANN = {"left": lambda n: (0.0, 1 - 1 / n), "right": lambda n: (1 / n, 1.0), "middle": lambda n: (1 / (2 * n), 1 - 1 / (2 * n)),
            "trapezoid": lambda n: (0.0, 1.0)}


def quadrature(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """Interpolation points and weights on [0, 1] for the path integral, as Captum's IntegratedGradients
    computes them (its helper is private; ``tests/test_explain.py`` checks these equal it bit for bit).

    Example:
        >>> quadrature("riemann_trapezoid", 3)
        ([0.0, 0.5, 1.0], [0.16666666666666666, 0.3333333333333333, 0.16666666666666666])
    """
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        return (0.5 * (1 + x)).tolist(), (0.5 * w).tolist()
    kind = method.removeprefix("riemann_")
    if kind not in _RIEMANN or n_steps < 2:
        raise ValueError(f"integration {method!r} with {n_steps} steps: use gausslegendre or riemann_{{left,right,middle,"
                         f"trapezoid}} with at least 2 steps")
    weights = [1 / n_steps] * n_steps
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
    lo, hi = _RIEMANN[kind](n_steps)
    return torch.linspace(lo, hi, n_steps).tolist(), weights


def weighted_gradients(problem: Problem, base: torch.Tensor, direction: torch.Tensor, alphas, weights,
                       rows: int) -> torch.Tensor:
    """``sum_i w_i * d f_t / d e`` at ``e = base + alpha_i * direction``, for every step t.

    Returns:
        (T, L, d) weighted gradient sums; rows of step t are zero at positions >= n_prompt + t.
    """
    T, L = problem.n_target, problem.length
    acc = torch.zeros((T, L, base.shape[-1]), dtype=torch.float32, device=base.device)
    for emb, w, _ in _passes(base, direction, alphas, weights, [0] * len(alphas), rows):
        f = problem.step_scorer(emb)                  # one forward; f(t) -> (B,) log p of step t
        for t in range(T):
            ft = f(t)
            # grad_outputs=w: one backward gives the weighted gradient of every row at once.
            (g,) = torch.autograd.grad(ft, emb, grad_outputs=w.to(ft.dtype), retain_graph=t < T - 1)
            n = problem.n_sources(t)  # causal: later positions have zero gradient
            acc[t, :n] += g[:, :n].float().sum(0)
    return acc


def path_scores(problem: Problem, base: torch.Tensor, direction: torch.Tensor, alphas, weights, groups,
                n_groups: int, rows: int) -> torch.Tensor:
    """Integrated-gradients scores of several groups of points (panels) in shared passes.

    ``scores[g, t, j] = sum over points i of group g of w_i * (d f_t / d e_j at base + alpha_i * direction) . direction_j``

    Returns:
        (G, T, L) float32; the gradient itself (L x d per point) is never kept.
    """
    T, L = problem.n_target, problem.length
    out = torch.zeros((n_groups, T, L), dtype=torch.float32, device=base.device)
    d32 = direction.float()
    for emb, w, grp in _passes(base, direction, alphas, weights, groups, rows):
        f = problem.step_scorer(emb)
        for t in range(T):
            ft = f(t)
            (g,) = torch.autograd.grad(ft, emb, grad_outputs=w.to(ft.dtype), retain_graph=t < T - 1)
            n = problem.n_sources(t)
            s = (g[:, :n].float() * d32[None, :n]).sum(-1)           # (B, n): per point, per source
            out[:, t, :n].index_add_(0, grp, s)
    return out


def _passes(base, direction, alphas, weights, groups, rows):
    """Chunks of ``rows`` interpolated sequences: (embeddings (B, L, d) requiring grad, weights, groups)."""
    a_all = torch.tensor(alphas, dtype=torch.float64)
    w_all = torch.tensor(weights, dtype=torch.float32, device=base.device)
    g_all = torch.tensor(groups, dtype=torch.long, device=base.device)
    # Interpolate in float32 and cast once: in bf16 a point like 0.4335 would itself round by ~1e-3.
    b32, d32 = base.float(), direction.float()
    for start in range(0, len(alphas), rows):
        a = a_all[start:start + rows].to(device=base.device, dtype=torch.float32)
        emb = (b32[None] + a[:, None, None] * d32[None]).to(base.dtype).detach().requires_grad_(True)  # (B, L, d)
        yield emb, w_all[start:start + rows], g_all[start:start + rows]


@dataclass
class _Panel:
    lo: float
    hi: float
    f_lo: torch.Tensor          # (T,) f at the panel's start
    f_hi: torch.Tensor          # (T,) f at its end
    scores: torch.Tensor | None = None   # (T, L) this panel's share of the attribution
    n: int = 0                  # gradient points spent on it

    def gap(self) -> torch.Tensor:
        """(T,) this panel's completeness gap: its scores' sum minus the exact change of f across it."""
        return self.scores.sum(-1) - (self.f_hi - self.f_lo)


def integrate(problem: Problem, x: torch.Tensor, b: torch.Tensor, ends: torch.Tensor, options: ExplainOptions,
              rows: int) -> tuple[torch.Tensor, dict]:
    """(T, L) integrated-gradients scores from ``b`` to ``x``, refined panel by panel until complete.

    Args:
        x, b: (L, d) input and baseline embeddings (equal where a token does not move).
        ends: (2, T) f(x), f(b).
        rows: interpolated sequences per forward pass.

    Returns:
        scores and what was spent: ``{"n_steps": gradient points, "panels": panels}``.
    """
    direction = x - b
    diff = (ends[0] - ends[1]).abs().clamp(min=1e-3)          # the floor of Explanation.completeness_error
    first = _Panel(0.0, 1.0, ends[1], ends[0])
    todo, done = [first], []
    child = max(2, options.n_steps // 2)   # points per half of a bisected panel
    spent = 0
    while True:
        # All new panels of this round share the same passes; each keeps its own scores.
        alphas, weights, groups = [], [], []
        for k, p in enumerate(todo):
            p.n = options.n_steps if p is first else child
            u, w = quadrature(options.integration, p.n)
            alphas += [p.lo + (p.hi - p.lo) * a for a in u]
            weights += [(p.hi - p.lo) * v for v in w]
            groups += [k] * p.n
        with torch.enable_grad():
            sc = path_scores(problem, b, direction, alphas, weights, groups, len(todo), rows)
        for k, p in enumerate(todo):
            p.scores = sc[k]
        spent += len(alphas)
        done += todo
        tol = options.completeness_tolerance
        total_gap = torch.stack([p.gap() for p in done]).sum(0)
        if tol is None or float((total_gap.abs() / diff).max()) <= tol:
            break
        # Bisect the panels that miss most (relative to the whole path's change), within the budget.
        worst = sorted(done, key=lambda p: -float((p.gap().abs() / diff).max()))
        budget = (options.max_n_steps - spent) // (2 * child)
        split = [p for p in worst[:budget] if float((p.gap().abs() / diff).max()) > tol / 4] or worst[:min(1, budget)]
        if not split:
            break   # the cap: the explanation reports (and flags) the gap it reached
        mids = torch.tensor([(p.lo + p.hi) / 2 for p in split], dtype=torch.float32, device=x.device)
        with torch.no_grad():   # the exact f at each new panel boundary: one forward row each
            f_mid = torch.cat([problem.logprobs_from_embeds(
                (b.float()[None] + m[:, None, None] * direction.float()[None]).to(x.dtype)).float() for m in mids.split(rows)])
        todo = []
        for p, m, fm in zip(split, mids.tolist(), f_mid):
            done.remove(p)
            todo += [_Panel(p.lo, (p.lo + p.hi) / 2, p.f_lo, fm), _Panel((p.lo + p.hi) / 2, p.hi, fm, p.f_hi)]
    scores = torch.stack([p.scores for p in done]).sum(0)
    return scores, {"n_steps": spent, "panels": len(done)}


@METHODS.register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Layer integrated gradients on the input embeddings, from the baseline token's embedding.

    Completeness: each step's scores sum to ``f(x) - f(baseline)`` up to the quadrature error,
    reported per step as the convergence delta.
    """

    name = "integrated_gradients"
    uses_gradients = True
    description = "layer integrated gradients on the input embeddings (complete: sums to f(x) - f(baseline))"

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        with torch.no_grad():
            x = problem.embed(problem.ids)               # (L, d)
            b = problem.embed(problem.baseline_ids())    # (L, d)
            ends = problem.logprobs_from_embeds(torch.stack([x, b])).float()  # (2, T): f(x), f(baseline)
        scores, spent = integrate(problem, x, b, ends, options, max(1, problem.grad_rows))
        return MethodOutput(scores=scores, target_logprobs=ends[0], baseline_logprobs=ends[1],
                            info={**spent, "integration": options.integration})


def _plain_gradient(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings (L, d) and each step's gradient at them (T, L, d): one point, weight 1."""
    with torch.no_grad():
        x = problem.embed(problem.ids)
    return x, weighted_gradients(problem, x, torch.zeros_like(x), [0.0], [1.0], 1)


@METHODS.register("input_x_gradient")
class InputXGradient(AttributionMethod):
    """Embedding times the gradient of the step's log-probability, summed over the embedding."""

    name = "input_x_gradient"
    uses_gradients = True
    description = "input embedding x gradient, summed over the embedding dimension"
    uses_baseline = False

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        x, g = _plain_gradient(problem)
        return MethodOutput(scores=(g * x.float()[None]).sum(-1))


@METHODS.register("saliency")
class Saliency(AttributionMethod):
    """Gradient magnitude: the L1 norm of the gradient over the embedding (always >= 0)."""

    name = "saliency"
    uses_gradients = True
    description = "L1 norm of the gradient w.r.t. each input embedding (unsigned)"
    uses_baseline = False

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:
        _, g = _plain_gradient(problem)
        return MethodOutput(scores=g.abs().sum(-1))
