"""The deletion check: is removing the top-attributed sources worse for the model than removing random ones?

For every generated step ``t`` with at least two sources, we build the sequence with the step's
``k`` highest-scoring sources replaced by the baseline token, and ``n_random`` sequences with
``k`` random sources replaced. All rows of all steps are scored in a few batched forward passes
(each row is read only at its own step). An explanation that tracks the model should make the
top-k deletion drop the log-probability more than random deletion does.

Replacement keeps positions fixed; deleting tokens would also shift every later position and
mix that effect into the drop.
"""

from __future__ import annotations

import torch

from .explanation import Faithfulness
from .problem import Problem


def deletion_check(problem: Problem, scores: torch.Tensor, *, k: int = 3, n_random: int = 8, seed: int = 0,
                   target_logprobs: torch.Tensor | None = None) -> Faithfulness:
    """Compare top-k and random-k deletions for every step of ``problem``.

    Args:
        problem: the explained sequence.
        scores: (T, L) attribution scores (entries at j >= n_prompt + t are ignored).
        k: sources replaced per step (capped at the step's sources minus one, so some remain).
        n_random: random draws per step.
        seed: seeds the random draws.
        target_logprobs: (T,) unperturbed log-probabilities, if already known.

    Returns:
        A :class:`Faithfulness` with per-step drops.

    Example:
        >>> f = deletion_check(problem, scores, k=1)  # doctest: +SKIP
        >>> f.score > 0  # top-1 deletion hurts more than random  # doctest: +SKIP
    """
    gen = torch.Generator().manual_seed(seed)
    if target_logprobs is None:
        target_logprobs = problem.logprobs_from_ids(problem.ids[None])[0]
    rows, owners = [], []          # owners[i] = (step, is_top)
    steps, ks = [], []
    base = problem.ids.detach().cpu()
    allowed = problem.source_positions().cpu()   # template tokens are never deleted
    for t in range(problem.n_target):
        cand = allowed[allowed < problem.n_sources(t)]
        n = len(cand)
        if n < 2:
            continue  # one source: top-k and random-k are the same deletion
        kt = min(k, n - 1)
        steps.append(t)
        ks.append(kt)
        order = torch.argsort(scores[t, cand].detach().float().cpu(), descending=True, stable=True)
        rows.append(_replaced(base, cand[order[:kt]], problem.baseline_id))
        owners.append((t, True))
        for _ in range(n_random):
            pick = torch.randperm(n, generator=gen)[:kt]
            rows.append(_replaced(base, cand[pick], problem.baseline_id))
            owners.append((t, False))
    if not rows:
        return Faithfulness(k=k, n_random=n_random, drop_top=[], drop_random=[], steps=[])
    lp = problem.logprobs_from_ids(torch.stack(rows))  # (R, T)
    top: dict[int, float] = {}
    rand: dict[int, list[float]] = {}
    fx = target_logprobs.detach().float().cpu()
    for r, (t, is_top) in enumerate(owners):
        drop = float(fx[t] - lp[r, t].float().cpu())
        if is_top:
            top[t] = drop
        else:
            rand.setdefault(t, []).append(drop)
    return Faithfulness(k=k, n_random=n_random, drop_top=[top[t] for t in steps],
                        drop_random=[sum(rand[t]) / len(rand[t]) for t in steps], steps=steps)


def _replaced(ids: torch.Tensor, positions: torch.Tensor, baseline_id: int) -> torch.Tensor:
    out = ids.clone()
    out[positions] = baseline_id
    return out
