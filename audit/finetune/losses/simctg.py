"""SimCTG contrastive token-representation loss (Su et al. 2022, "A Contrastive Framework for
Neural Text Generation", NeurIPS 2022, arXiv:2202.06417), eq. (2).

Pushes the last-layer representations of distinct tokens of a sequence apart, so the model's
representation space is isotropic and contrastive search / greedy decoding degenerates less:

    L_CL = 1 / (|x| (|x| - 1)) * sum_i sum_{j != i} max(0, rho - s(h_i, h_i) + s(h_i, h_j))

with s the cosine similarity (so s(h_i, h_i) = 1) and margin rho (0.5 in the paper). Padding
tokens are excluded; the loss is averaged over sequences with at least two real tokens. The
paper trains with ``ce + simctg`` (weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import LOSSES
from .base import Loss, LossInputs


def simctg_loss(hidden: torch.Tensor, attention_mask: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Mean over sequences of the mean hinge over ordered pairs of distinct real positions.

    Args:
        hidden: (B, T, D) last-layer hidden states.
        attention_mask: (B, T) 1 for real tokens.
        margin: rho.

    Example:
        >>> h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # orthogonal: cos = 0
        >>> float(simctg_loss(h, torch.ones(1, 2), margin=0.5))  # max(0, 0.5 - 1 + 0) = 0
        0.0
    """
    h = F.normalize(hidden.float(), dim=-1)
    cos = h @ h.transpose(1, 2)                                             # (B, T, T)
    hinge = torch.relu(margin - 1.0 + cos)
    m = attention_mask.float()
    pair = m[:, :, None] * m[:, None, :]
    pair = pair * (1 - torch.eye(hidden.shape[1], device=hidden.device))[None]
    n_pairs = pair.sum((1, 2))                                              # (B,) = n (n - 1)
    per_seq = (hinge * pair).sum((1, 2)) / n_pairs.clamp(min=1)
    has_pairs = n_pairs > 0
    return per_seq[has_pairs].sum() / has_pairs.sum().clamp(min=1)


@LOSSES.register("simctg")
class SimCTG(Loss):
    """Contrastive token-representation loss on the clean pass's last hidden states."""

    name = "simctg"
    needs_hidden = True

    @dataclass
    class Options:
        margin: float = 0.5          # rho in the paper

        def __post_init__(self):
            if not 0 <= self.margin <= 2:
                raise ValueError("margin must be in [0, 2] (cosine similarities lie in [-1, 1])")

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        if inputs.hidden is None:
            raise RuntimeError("simctg needs the clean pass's hidden states (needs_hidden)")
        return simctg_loss(inputs.hidden, inputs.attention_mask, self.options.margin)
