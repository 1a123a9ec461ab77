"""Token-level unlikelihood training (Welleck et al. 2019, "Neural Text Generation with
Unlikelihood Training", ICLR 2020, arXiv:1908.04319), eq. (4).

At each scored step t the negative candidates are the tokens of the previous context,
``C_t = {x_1, ..., x_{t-1}} \\ {x_t}``, and the loss pushes their probabilities down:

    L_UL = - sum_t sum_{c in C_t} log(1 - p(c | x_<t))

averaged over scored tokens (as the authors' ``fairseq`` criterion normalises by target tokens).
The target token itself is never a candidate, even when it also occurs earlier in the context,
and padding never is one. Combined with ``ce`` (weight alpha in the paper, typically 0.5-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import LOSSES
from .base import IGNORE, Loss, LossInputs


def candidate_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                   vocab_size: int, *, window: int | None = None) -> torch.Tensor:
    """Negative candidates of each prediction step as a (B, T-1, V) bool mask.

    Row t (predicting ``input_ids[:, t+1]``) marks every real token in ``input_ids[:, :t+1]``
    (within the last ``window`` positions when given), minus the target ``input_ids[:, t+1]``.
    Only steps whose label is scored have candidates.

    Example:
        >>> ids = torch.tensor([[3, 1, 3, 2]]); m = candidate_mask(ids, torch.ones_like(ids), ids, 5)
        >>> m[0, 1].nonzero().flatten().tolist()  # predicting 3 after "3 1": candidates {1} (3 is the target)
        [1]
    """
    B, T = input_ids.shape
    targets = labels[:, 1:]                                                    # (B, T-1)
    pos = torch.arange(T, device=input_ids.device)
    # allowed[t, s]: context position s is visible when predicting step t (s <= t).
    allowed = pos[None, :] <= pos[:-1, None]                                   # (T-1, T)
    if window is not None:
        allowed &= pos[None, :] > pos[:-1, None] - window
    valid = allowed[None] & attention_mask.bool()[:, None, :]                  # (B, T-1, T)
    valid &= (targets != IGNORE)[:, :, None]
    ctx = input_ids[:, None, :].expand(B, T - 1, T)                            # (B, T-1, T)
    # scatter_add then > 0: duplicates count once and invalid entries add 0 (no overwrite race).
    counts = torch.zeros(B, T - 1, vocab_size, device=input_ids.device)
    counts.scatter_add_(2, ctx, valid.float())
    mask = counts > 0
    safe_targets = targets.clamp(min=0)
    mask.scatter_(2, safe_targets[:, :, None], False)                         # never the target itself
    return mask


def token_unlikelihood(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor, *, window: int | None = None, min_prob_gap: float = 1e-5) -> torch.Tensor:
    """Mean over scored tokens of ``-sum_c log(1 - p(c))`` over the step's candidates.

    Example:
        >>> ids = torch.tensor([[0, 1]]); logits = torch.zeros(1, 2, 2)
        >>> round(float(token_unlikelihood(logits, ids, torch.ones_like(ids), ids)), 4)  # -log(1 - 0.5)
        0.6931
    """
    mask = candidate_mask(input_ids, attention_mask, labels, logits.shape[-1], window=window)
    probs = torch.softmax(logits[:, :-1].float(), dim=-1)                      # (B, T-1, V)
    # clamp: log(0) when the model is certain of a candidate would be -inf.
    one_minus = (1.0 - probs).clamp(min=min_prob_gap)
    per_step = -(torch.log(one_minus) * mask).sum(-1)                          # (B, T-1)
    n = (labels[:, 1:] != IGNORE).sum()
    return per_step.sum() / n.clamp(min=1)


@LOSSES.register("unlikelihood")
class TokenUnlikelihood(Loss):
    """Token-level unlikelihood: penalise repeating tokens of the previous context."""

    name = "unlikelihood"

    @dataclass
    class Options:
        window: int | None = None     # only the last N context tokens are candidates (None: all previous tokens)

        def __post_init__(self):
            if self.window is not None and self.window < 1:
                raise ValueError("window must be >= 1")

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        return token_unlikelihood(inputs.logits, inputs.input_ids, inputs.attention_mask, inputs.labels,
                                  window=self.options.window)
