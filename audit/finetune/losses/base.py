"""The loss template and the inputs every loss receives.

The trainer runs the model once on the clean batch (from input embeddings, so adversarial
losses can perturb the same embeddings) and hands every loss a :class:`LossInputs`. Losses that
need more forward passes (adversarial, smoothness, sequence-level unlikelihood) call
:meth:`LossInputs.forward_embeds` / the model themselves.

Shapes: B batch, T sequence length, V vocabulary, D hidden size. Logits at position t predict
token t+1, so losses compare ``logits[:, :-1]`` with ``labels[:, 1:]`` (see :func:`shift`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

IGNORE = -100  # label of positions that are not scored (prompt tokens, padding)


@dataclass
class LossInputs:
    """One micro-batch and its clean forward pass."""

    model: Any                      # the causal LM (a transformers / peft module)
    input_ids: torch.Tensor         # (B, T) right-padded
    attention_mask: torch.Tensor    # (B, T) 1 for real tokens
    labels: torch.Tensor            # (B, T) token ids where scored, IGNORE elsewhere
    embeds: torch.Tensor            # (B, T, D) input embeddings of the clean pass
    logits: torch.Tensor            # (B, T, V) clean logits
    hidden: torch.Tensor | None = None  # (B, T, D) last-layer hidden states when a loss asked for them
    # Paired losses (see data.collate): one continuation after B' perturbed prompts (pair_input_ids,
    # pair_attention_mask, pair_labels) and after their clean prompts (orig_input_ids, ...).
    pair: dict[str, torch.Tensor] | None = None

    def forward_embeds(self, embeds: torch.Tensor, *, hidden: bool = False):
        """Run the model on (perturbed) input embeddings with this batch's mask."""
        return self.model(inputs_embeds=embeds, attention_mask=self.attention_mask, output_hidden_states=hidden,
                          use_cache=False)

    def scored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets, mask)`` aligned with ``logits[:, :-1]``: (B, T-1) ids and bool mask of scored positions."""
        targets = self.labels[:, 1:]
        return targets, targets != IGNORE


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align next-token logits with their targets: ``(logits[:, :-1], targets, mask)``."""
    targets = labels[:, 1:]
    return logits[:, :-1], targets, targets != IGNORE


class Loss:
    """Base class: public ``__call__`` template, subclass hook ``_compute``.

    Subclasses set ``name``, the ``Options`` dataclass, ``needs_hidden`` when they read the
    last hidden states of the clean pass, ``needs_pairs`` when they read ``LossInputs.pair``, and
    ``needs_embed_grad`` when they take gradients w.r.t. the clean pass's ``embeds`` (the trainer
    then makes them require grad even where the embedding matrix is frozen, as under LoRA).
    """

    name: ClassVar[str] = ""
    needs_hidden: ClassVar[bool] = False
    needs_pairs: ClassVar[bool] = False
    needs_embed_grad: bool = False

    @dataclass
    class Options:
        pass

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        out = self._compute(inputs)
        if out.dim() != 0:
            raise RuntimeError(f"loss {self.name!r} returned shape {tuple(out.shape)}, expected a scalar")
        return out

    def _compute(self, inputs: LossInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"
