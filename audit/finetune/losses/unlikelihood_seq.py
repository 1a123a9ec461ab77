"""Sequence-level unlikelihood training (Welleck et al. 2019, "Neural Text Generation with
Unlikelihood Training", arXiv:1908.04319), section 5.2, eq. (8).

The model greedily continues a prefix of each training sequence; every continuation token that
completes (or belongs to) an n-gram already seen earlier in the prefix + continuation is a
negative candidate, and the loss ``-log(1 - p(x_t | x_<t))`` pushes it down. Averaged over the
continuation tokens. In the paper this term is used on a fraction of updates after MLE
training, mixed with ``ce``; here its weight in the config sets the mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import LOSSES
from .base import Loss, LossInputs


def repeated_ngram_mask(seq: list[int], start: int, n: int) -> list[bool]:
    """For each position >= ``start`` in ``seq``: is it inside an n-gram that occurred before?

    Example:
        >>> repeated_ngram_mask([1, 2, 1, 2, 3], 2, 2)  # "1 2" repeats at positions 2-3
        [True, True, False]
    """
    flags = [False] * len(seq)
    seen: set[tuple[int, ...]] = set()
    for i in range(len(seq) - n + 1):
        gram = tuple(seq[i:i + n])
        if gram in seen and i + n - 1 >= start:
            for j in range(i, i + n):
                flags[j] = True
        seen.add(gram)
    return flags[start:]


def sequence_unlikelihood(logits: torch.Tensor, tokens: torch.Tensor, flags: torch.Tensor, *,
                          min_prob_gap: float = 1e-5) -> torch.Tensor:
    """Mean over continuation steps of ``-log(1 - p(token))`` at flagged steps.

    Args:
        logits: (B, L, V) logits that predicted each continuation token.
        tokens: (B, L) continuation tokens.
        flags: (B, L) bool, True where the token is part of a repeated n-gram.

    Example:
        >>> logits = torch.zeros(1, 2, 2); toks = torch.tensor([[0, 1]]); flags = torch.tensor([[False, True]])
        >>> round(float(sequence_unlikelihood(logits, toks, flags)), 4)  # -log(0.5) / 2
        0.3466
    """
    p = torch.softmax(logits.float(), dim=-1).gather(-1, tokens[..., None])[..., 0]   # (B, L)
    loss = -torch.log((1.0 - p).clamp(min=min_prob_gap)) * flags
    return loss.sum() / max(1, tokens.numel())


@LOSSES.register("unlikelihood_seq")
class SequenceUnlikelihood(Loss):
    """Sequence-level unlikelihood on the model's own greedy continuations."""

    name = "unlikelihood_seq"

    @dataclass
    class Options:
        ngram: int = 4               # repeated n-grams of this order are penalised (the paper uses 4)
        prefix_length: int = 32     # tokens of each training sequence used as the prefix (cut to the shortest row)
        continuation_length: int = 32  # greedy tokens generated from the prefix

        def __post_init__(self):
            if self.ngram < 1 or self.prefix_length < 1 or self.continuation_length < 1:
                raise ValueError("ngram, prefix_length and continuation_length must be >= 1")

    def _compute(self, inputs: LossInputs) -> torch.Tensor:
        o = self.options
        model = inputs.model
        # The shortest row bounds the prefix so no prefix contains padding (right-padded batch).
        shortest = int(inputs.attention_mask.sum(1).min())
        k = max(1, min(o.prefix_length, shortest))
        prefix = inputs.input_ids[:, :k]
        was_training = model.training
        model.eval()  # greedy decoding without dropout, as at inference
        with torch.no_grad():
            cont = _greedy(model, prefix, o.continuation_length)                   # (B, L)
        model.train(was_training)
        full = torch.cat([prefix, cont], dim=1)
        flags = torch.tensor([repeated_ngram_mask(row, k, o.ngram) for row in full.tolist()], dtype=torch.bool,
                             device=full.device)                                      # (B, L)
        logits = model(input_ids=full, use_cache=False).logits[:, k - 1:-1]           # (B, L, V)
        return sequence_unlikelihood(logits, cont, flags)


def _greedy(model, prefix: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy continuation with the KV cache (all rows share the prefix length: no padding)."""
    out = []
    past = None
    cur = prefix
    for _ in range(steps):
        res = model(input_ids=cur, past_key_values=past, use_cache=True)
        past = res.past_key_values
        nxt = res.logits[:, -1].argmax(-1)
        out.append(nxt)
        cur = nxt[:, None]
    return torch.stack(out, dim=1)
