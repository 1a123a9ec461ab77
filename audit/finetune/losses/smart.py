"""Symmetric-KL smoothness regularisation in the style of SMART (Jiang et al. 2020, "SMART: Robust
and Efficient Fine-Tuning for Pre-trained Natural Language Models through Principled Regularized
Optimization", ACL 2020, arXiv:1911.03437) and R3F (Aghajanyan et al. 2021, "Better Fine-Tuning by
Reducing Representational Collapse", ICLR 2021, arXiv:2008.03156).

The next-token distribution should not move when the input embeddings move a little:

    R = KL(p(x) || p(x + delta)) + KL(p(x + delta) || p(x))

averaged over scored positions. With ``steps: 0`` delta is random noise (R3F); with ``steps >= 1``
delta first takes projected ascent steps on R from the noise (SMART's adversarial regulariser).
Gradients flow through both distributions, as in R3F.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import LOSSES
from .base import Loss, LossInputs
from .pgd import PerturbationOptions, adversarial_delta


def symmetric_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(p||q) + KL(q||p)`` per position (summed over the vocabulary), averaged over ``mask``.

    Args:
        p_logits / q_logits: (B, T, V) logits.
        mask: (B, T) bool, positions to average over.

    Example:
        >>> p = torch.log(torch.tensor([[[0.5, 0.5]]])); q = torch.log(torch.tensor([[[0.25, 0.75]]]))
        >>> round(float(symmetric_kl(p, q, torch.ones(1, 1, dtype=torch.bool))), 6)  # 0.25 * ln 3
        0.274653
    """
    lp = F.log_softmax(p_logits.float(), dim=-1)
    lq = F.log_softmax(q_logits.float(), dim=-1)
    # (p - q) * (log p - log q) summed over V is exactly KL(p||q) + KL(q||p).
    per_pos = ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1)                       # (B, T)
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp(min=1)


@LOSSES.register("smart")
class SmoothnessKL(Loss):
    """Symmetric-KL smoothness of the output distribution under embedding perturbations."""

    name = "smart"

    @dataclass
    class Options(PerturbationOptions):
        steps: int = 1            # 0: random noise only (R3F); >= 1: SMART ascent steps on the KL
        init: str = "normal"      # noise the perturbation starts from
        init_scale: float = 0.5   # noise size as a fraction of epsilon

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        o = self.options
        _, mask = inputs.scored()
        mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)          # align with (B, T) logits
        clean = inputs.logits

        def objective(x: torch.Tensor) -> torch.Tensor:
            # The ascent treats the clean distribution as fixed.
            return symmetric_kl(clean.detach(), inputs.forward_embeds(x).logits, mask)

        delta = adversarial_delta(inputs.embeds, inputs.attention_mask, objective, o)
        return symmetric_kl(clean, inputs.forward_embeds(inputs.embeds + delta).logits, mask)
