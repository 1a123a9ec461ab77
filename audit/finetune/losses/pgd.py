"""Embedding-space adversarial training: PGD (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", arXiv:1706.06083) and FreeLB (Zhu et al. 2020, "FreeLB:
Enhanced Adversarial Training for Natural Language Understanding", ICLR 2020, arXiv:1909.11764).

A perturbation ``delta`` of the input embeddings starts at ``init`` and takes K ascent steps on
the language-modelling loss, each followed by projection onto the norm ball of radius
``epsilon`` (per example over all real tokens for ``l2``, as in FreeLB; per token for
``l2_token``; per coordinate for ``linf``). The adversarial loss is the cross-entropy on the
perturbed embeddings; with ``ce`` in the config it is added to the clean loss.

``mode: pgd`` trains on the last perturbation only (ascent steps touch no parameter gradient);
``mode: freelb`` averages the loss over the K perturbations seen on the way ("free" large-batch
training), at K times the activation memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import LOSSES
from .base import Loss, LossInputs
from .ce import cross_entropy


@dataclass
class PerturbationOptions:
    steps: int = 1                # K ascent steps
    epsilon: float = 1.0          # radius of the norm ball delta stays in
    step_size: float = 0.5        # ascent step (in the norm's units: l2 steps along the normalised gradient, linf along its sign)
    norm: str = "l2"              # l2 (per example, FreeLB) | l2_token (per token) | linf
    init: str = "zero"            # zero (the first ascent reuses the clean pass: one forward fewer) | uniform (FreeLB) | normal
    init_scale: float = 0.5       # initial perturbation size, as a fraction of epsilon

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.epsilon <= 0:
            raise ValueError("epsilon must be > 0")
        if self.step_size <= 0:
            raise ValueError("step_size must be > 0")
        if self.norm not in ("l2", "l2_token", "linf"):
            raise ValueError(f"norm must be l2, l2_token or linf, got {self.norm!r}")
        if self.init not in ("zero", "uniform", "normal"):
            raise ValueError(f"init must be zero, uniform or normal, got {self.init!r}")
        if not 0 <= self.init_scale <= 1:
            raise ValueError("init_scale must be in [0, 1]")


def _per_example_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))          # (B, 1, 1)


def project(delta: torch.Tensor, mask: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Zero padding positions and pull ``delta`` back into the epsilon ball.

    Example:
        >>> d = project(torch.ones(1, 2, 2), torch.ones(1, 2), 1.0, "l2")
        >>> round(float(d.flatten().norm()), 6)
        1.0
    """
    delta = delta * mask[..., None].to(delta.dtype)
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    if norm == "l2_token":
        n = delta.norm(dim=-1, keepdim=True)                                   # (B, T, 1)
    else:
        n = _per_example_norm(delta)                                           # (B, 1, 1)
    return delta * (epsilon / n.clamp(min=1e-12)).clamp(max=1.0)


def init_delta(embeds: torch.Tensor, mask: torch.Tensor, o: PerturbationOptions) -> torch.Tensor:
    """A starting perturbation of size about ``init_scale * epsilon`` (inside the ball)."""
    if o.init == "zero" or o.init_scale == 0:
        return torch.zeros_like(embeds)
    raw = torch.rand_like(embeds) * 2 - 1 if o.init == "uniform" else torch.randn_like(embeds)
    raw = raw * mask[..., None].to(raw.dtype)
    if o.norm == "linf":
        return raw.clamp(-1, 1) * (o.init_scale * o.epsilon)
    n = raw.norm(dim=-1, keepdim=True) if o.norm == "l2_token" else _per_example_norm(raw)
    return raw / n.clamp(min=1e-12) * (o.init_scale * o.epsilon)


def ascend(delta: torch.Tensor, grad: torch.Tensor, o: PerturbationOptions) -> torch.Tensor:
    """One ascent step along the (normalised) gradient."""
    if o.norm == "linf":
        return delta + o.step_size * grad.sign()
    n = grad.norm(dim=-1, keepdim=True) if o.norm == "l2_token" else _per_example_norm(grad)
    return delta + o.step_size * grad / n.clamp(min=1e-12)


def adversarial_delta(embeds: torch.Tensor, mask: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
                      o: PerturbationOptions, *, on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
                      first_grad: torch.Tensor | None = None) -> torch.Tensor:
    """K projected ascent steps of ``objective(embeds + delta)`` w.r.t. delta; returns delta (detached).

    Only delta receives gradients here (``torch.autograd.grad``), so the ascent leaves parameter
    gradients untouched. ``on_step(delta, loss)`` sees every iterate (FreeLB accumulates it).
    ``first_grad``: the objective's gradient at ``delta = 0`` when the caller already has it (the
    clean pass); with ``init: zero`` the first ascent step then needs no forward pass of its own.

    Example:
        >>> e = torch.randn(2, 3, 4); m = torch.ones(2, 3)
        >>> d = adversarial_delta(e, m, lambda x: (x ** 2).sum(), PerturbationOptions(steps=3, epsilon=0.1))
        >>> bool((d.flatten(1).norm(dim=1) <= 0.1 + 1e-6).all())
        True
    """
    base = embeds.detach()
    delta = project(init_delta(base, mask, o), mask, o.epsilon, o.norm)
    start = 0
    if first_grad is not None and o.init == "zero" and o.steps > 0 and on_step is None:
        delta = project(ascend(delta, first_grad.detach(), o), mask, o.epsilon, o.norm).detach()
        start = 1
    for _ in range(start, o.steps):
        delta.requires_grad_(True)
        loss = objective(base + delta)
        if on_step is not None:
            on_step(delta, loss)
        (grad,) = torch.autograd.grad(loss, delta, retain_graph=on_step is not None)
        delta = project(ascend(delta.detach(), grad.detach(), o), mask, o.epsilon, o.norm).detach()
    return delta.detach()


@LOSSES.register("pgd")
class EmbeddingPGD(Loss):
    """Cross-entropy on adversarially perturbed input embeddings (PGD / FreeLB)."""

    name = "pgd"

    @dataclass
    class Options(PerturbationOptions):
        mode: str = "pgd"          # pgd: loss at the final perturbation | freelb: mean loss over the K iterates

        def __post_init__(self):
            super().__post_init__()
            if self.mode not in ("pgd", "freelb"):
                raise ValueError(f"mode must be pgd or freelb, got {self.mode!r}")

    @property
    def needs_embed_grad(self) -> bool:
        """PGD from zero takes its first ascent direction from the clean pass (one forward fewer)."""
        o = self.options
        return o.mode == "pgd" and o.init == "zero" and o.steps > 0

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        o = self.options
        mask = inputs.attention_mask

        def objective(x: torch.Tensor) -> torch.Tensor:
            return cross_entropy(inputs.forward_embeds(x).logits, inputs.labels)

        if o.mode == "pgd":
            first = None
            if o.init == "zero" and o.steps > 0 and inputs.embeds.requires_grad:
                # At delta = 0 the objective IS the clean loss: its gradient w.r.t. the embeddings
                # comes from the clean graph (kept for the final backward anyway), no extra forward.
                (first,) = torch.autograd.grad(cross_entropy(inputs.logits, inputs.labels), inputs.embeds, retain_graph=True)
            delta = adversarial_delta(inputs.embeds, mask, objective, o, first_grad=first)
            # Parameters (embeddings included) learn from the loss at the worst perturbation found.
            return objective(inputs.embeds + delta)
        # FreeLB: the loss at each of the K iterates trains the parameters (mean over iterates), and
        # the same forward pass gives delta's ascent direction: K forwards in all, no extra ones.
        delta = project(init_delta(inputs.embeds.detach(), mask, o), mask, o.epsilon, o.norm)
        losses: list[torch.Tensor] = []
        for _ in range(max(1, o.steps)):
            delta.requires_grad_(True)
            loss = objective(inputs.embeds + delta)
            (grad,) = torch.autograd.grad(loss, delta, retain_graph=True)
            losses.append(loss)
            delta = project(ascend(delta.detach(), grad.detach(), o), mask, o.epsilon, o.norm).detach()
        return torch.stack(losses).mean()
