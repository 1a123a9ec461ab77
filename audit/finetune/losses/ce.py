"""Cross-entropy: the maximum-likelihood next-token loss, averaged over scored target tokens.

Reference: the standard language-modelling objective (e.g. Radford et al. 2019, "Language Models
are Unsupervised Multitask Learners"). Prompt tokens and padding carry label -100 and are skipped,
so prompt/target records train only on their targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import LOSSES
from .base import IGNORE, Loss, LossInputs


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over positions whose label is not -100.

    Args:
        logits: (B, T, V) logits; position t predicts token t+1.
        labels: (B, T) token ids, -100 where not scored.

    Example:
        >>> logits = torch.zeros(1, 3, 4); labels = torch.tensor([[-100, 1, 2]])
        >>> round(float(cross_entropy(logits, labels)), 4)  # uniform over 4: log 4
        1.3863
    """
    targets = labels[:, 1:]
    # Float32 for the softmax even under bf16 autocast: small probabilities matter for the mean.
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Token-level cross-entropy on target tokens."""

    name = "ce"

    @dataclass
    class Options:
        label_smoothing: float = 0.0   # mix the one-hot target with uniform (Szegedy et al. 2016)

        def __post_init__(self):
            if not 0 <= self.label_smoothing < 1:
                raise ValueError("label_smoothing must be in [0, 1)")

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        if self.options.label_smoothing == 0:
            return cross_entropy(inputs.logits, inputs.labels)
        targets = inputs.labels[:, 1:]
        logits = inputs.logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                               label_smoothing=self.options.label_smoothing)
