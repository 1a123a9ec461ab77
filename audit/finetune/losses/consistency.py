"""Consistency (invariance) on paired data: the model should predict the same next-token
distributions after a perturbed prompt as after the clean prompt it came from.

Stability training (Zheng et al. 2016, "Improving the Robustness of Deep Neural Networks via
Stability Training", CVPR 2016, arXiv:1604.04326) adds ``KL(p(.|x) || p(.|x'))`` for a perturbed
copy ``x'`` of every input; TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between
Robustness and Accuracy", ICML 2019, arXiv:1901.08573) uses the same KL with ``x'`` an
adversarial example. This is their data-level, sequence form for a causal LM: for an
adversarial record (perturbed prompt ``x'``, clean prompt ``x``, continuation ``y``),

    R = mean over target positions t of  KL( p(. | x, y<t) || p(. | x', y<t) )

with the clean side detached by default (stability training: the clean prediction is the
teacher, so the loss moves the perturbed prediction towards it and never the other way). Unlike
``smart`` (embedding-space noise), ``x'`` is a real discrete attack (TextAttack's character and
word edits), which no small ball in embedding space contains.

The continuation ``y`` is the record's ``pair_target`` (default its target): ``audit harden``
compares on the model's own clean output, the trajectory greedy decoding follows and the attack
success rate measures, while ``ce`` learns the reference. Records without an ``original_prompt``
contribute nothing; a batch without any gives 0. Cost: two extra forward passes over the paired
rows (the clean one without gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import LOSSES
from .base import IGNORE, Loss, LossInputs


def paired_kl(clean_logits: torch.Tensor, clean_labels: torch.Tensor, pert_logits: torch.Tensor,
              pert_labels: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """``KL(p_clean || p_pert)`` per target token (summed over the vocabulary), averaged over tokens.

    Row ``i`` of the clean and the perturbed batch hold the same target after different prompts
    (different lengths): the k-th scored position of one is aligned with the k-th of the other.

    Args:
        clean_logits / pert_logits: (N, T, V) and (N, T', V) logits; position t predicts token t+1.
        clean_labels / pert_labels: (N, T) and (N, T') token ids, -100 where not scored.
        temperature: both distributions are softened by it (Hinton et al. 2015); the KL is scaled
            by ``temperature ** 2`` so gradients keep their size.

    Example:
        >>> clean = torch.log(torch.tensor([[[1., 1.], [.5, .5], [1., 1.]]]))   # prompt of 2 tokens, then the target
        >>> pert = torch.log(torch.tensor([[[.25, .75], [1., 1.]]]))           # prompt of 1 token, then the target
        >>> kl = paired_kl(clean, torch.tensor([[-100, -100, 1]]), pert, torch.tensor([[-100, 1]]))
        >>> round(float(kl), 6)  # .5 ln(.5/.25) + .5 ln(.5/.75)
        0.143841
    """
    c_mask = clean_labels[:, 1:] != IGNORE
    p_mask = pert_labels[:, 1:] != IGNORE
    if not torch.equal(c_mask.sum(1), p_mask.sum(1)):
        raise ValueError("paired_kl: paired rows must score the same number of target tokens")
    # Boolean indexing flattens row by row, so the k-th token of row i lines up on both sides.
    c = clean_logits[:, :-1][c_mask].float() / temperature                        # (M, V)
    q = pert_logits[:, :-1][p_mask].float() / temperature                         # (M, V)
    if c.shape[0] == 0:
        return pert_logits.sum() * 0.0
    lc = F.log_softmax(c, dim=-1)
    lq = F.log_softmax(q, dim=-1)
    return (lc.exp() * (lc - lq)).sum(-1).mean() * temperature ** 2


@LOSSES.register("consistency")
class Consistency(Loss):
    """KL from the clean-prompt to the perturbed-prompt next-token distributions of paired records."""

    name = "consistency"
    needs_pairs = True

    @dataclass
    class Options:
        detach_clean: bool = True    # the clean prediction is a fixed teacher (stability training); False: gradients through both (TRADES)
        temperature: float = 1.0     # soften both distributions (1: the model's own)

        def __post_init__(self):
            if self.temperature <= 0:
                raise ValueError("temperature must be > 0")

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        pair = inputs.pair
        if not pair or pair["pair_input_ids"].shape[0] == 0:
            # Still a function of the parameters, so every process runs the same backward graph.
            return inputs.logits.sum() * 0.0
        with torch.enable_grad() if not self.options.detach_clean else torch.no_grad():
            clean = inputs.model(input_ids=pair["orig_input_ids"], attention_mask=pair["orig_attention_mask"],
                                 use_cache=False).logits
        # Its own pass on the perturbed prompt: the continuation compared on need not be the CE target
        # (harden compares on the model's clean output and learns the reference with CE).
        pert = inputs.model(input_ids=pair["pair_input_ids"], attention_mask=pair["pair_attention_mask"],
                            use_cache=False).logits
        return paired_kl(clean, pair["orig_labels"], pert, pair["pair_labels"], temperature=self.options.temperature)
