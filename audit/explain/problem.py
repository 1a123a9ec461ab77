"""One attribution problem: a prompt + target token sequence and the log-probabilities to explain.

Everything is teacher-forced over the whole sequence at once. A causal LM's logits at position
``i`` depend only on positions ``<= i``, so ONE forward pass over prompt + target yields every
generated step's target log-probability (step ``t`` is read at position ``n_prompt + t - 1``), and
a perturbation of the sequence can be scored for all steps in one row. Steps never see the tokens
after them, which is exactly the prefix each step had when it was generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Problem:
    """The token sequence and the model; methods call its batched scoring functions."""

    model: torch.nn.Module
    ids: torch.Tensor          # (L,) prompt + target token ids, on the model's device
    n_prompt: int              # P: the first P ids are the prompt
    baseline_id: int           # the token that stands for "absent"
    batch_rows: int            # rows per forward pass (no gradient kept)
    grad_rows: int = 0         # rows per pass that keeps activations for backward (0: batch_rows)
    sources: torch.Tensor | None = None   # (L,) bool: positions that may be attributed (None: all).
                                          # Chat-template tokens outside the user's words are not: they
                                          # stay fixed on every path and are never deleted or ablated.

    def __post_init__(self):
        if not self.grad_rows:
            self.grad_rows = self.batch_rows

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_target(self) -> int:
        return self.length - self.n_prompt

    @property
    def target_ids(self) -> torch.Tensor:
        return self.ids[self.n_prompt:]

    def n_sources(self, step: int) -> int:
        """How many tokens precede generated step ``step`` (its possible sources)."""
        return self.n_prompt + step

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of ``ids`` (the layer every gradient method attributes to)."""
        return self.model.get_input_embeddings()(ids)

    def baseline_ids(self) -> torch.Tensor:
        """The sequence with every source replaced by the baseline token (other positions kept)."""
        out = torch.full_like(self.ids, self.baseline_id)
        return out if self.sources is None else torch.where(self.sources, out, self.ids)

    def source_positions(self) -> torch.Tensor:
        """(S,) indices of the positions that may be attributed."""
        if self.sources is None:
            return torch.arange(self.length, device=self.ids.device)
        return torch.nonzero(self.sources, as_tuple=False)[:, 0]

    def logprobs_from_source_ids(self, sub: torch.Tensor) -> torch.Tensor:
        """(B, S) ids of the source positions only -> (B, T) log-probabilities (other positions as in ``ids``).

        Perturbation methods (Captum) see only the sources as features, so template tokens are
        never ablated and cost no rows.
        """
        full = self.ids[None].expand(sub.shape[0], -1).clone()
        full[:, self.source_positions()] = sub.to(full.device)
        return self.logprobs_from_ids(full)

    def _step_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, L, V) logits -> (B, T) log-probabilities of each target token at its step."""
        P, T = self.n_prompt, self.n_target
        logits = logits[:, P - 1:P - 1 + T].float()                      # (B, T, V)
        tgt = self.target_ids.view(1, T, 1).expand(logits.shape[0], T, 1)
        return torch.log_softmax(logits, dim=-1).gather(-1, tgt)[..., 0]  # (B, T)

    def _split(self):
        """``(body, head)`` when ``head(body(x).last_hidden_state)`` reproduces the model's logits, else None.

        Per-step backward passes then start from one position's (B, V) logits instead of the whole
        (B, T, V) block: on a 2k-vocabulary model the output layer's backward was most of the cost.
        Models that post-process logits (soft-capping, scaling) fail the check and use the full path.
        """
        if not hasattr(self, "_split_cache"):
            self._split_cache = None
            body = getattr(self.model, "base_model", None)
            head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
            if body is not None and body is not self.model and head is not None:
                with torch.no_grad():
                    ids = self.ids[None]
                    mask = torch.ones_like(ids)
                    full = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
                    try:
                        h = body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                        mine = head(h).float()
                    except Exception:  # an unusual body signature: keep the full path
                        mine = None
                if mine is not None and mine.shape == full.shape and torch.allclose(mine, full, rtol=1e-4, atol=1e-4):
                    self._split_cache = (body, head)
        return self._split_cache

    def step_scorer(self, embeds: torch.Tensor):
        """Forward ``embeds`` (B, L, d) once; return ``f(t) -> (B,)`` log-probabilities of step t (differentiable)."""
        split = self._split()
        if split is None:
            full = self.logprobs_from_embeds(embeds)  # (B, T)
            return lambda t: full[:, t]
        body, head = split
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        h = body(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state   # (B, L, d)
        P = self.n_prompt

        def f(t: int) -> torch.Tensor:
            logits = head(h[:, P - 1 + t]).float()                           # (B, V)
            return torch.log_softmax(logits, dim=-1)[:, self.target_ids[t]]
        return f

    def _forward_logprobs(self, **inputs) -> torch.Tensor:
        """(B, T) target log-probabilities, with the output layer applied to the T predicting positions only.

        The full (B, L, V) logits were most of the memory on a real vocabulary (SmolLM2: 143 rows x
        57 positions x 49,152 = 1.6 GB per pass) and never read outside those positions.
        """
        first = next(iter(inputs.values()))
        mask = torch.ones(first.shape[:2], dtype=torch.long, device=first.device)
        split = self._split()
        P, T = self.n_prompt, self.n_target
        if split is None:
            return self._step_logprobs(self.model(**inputs, attention_mask=mask, use_cache=False).logits)
        body, head = split
        h = body(**inputs, attention_mask=mask, use_cache=False).last_hidden_state[:, P - 1:P - 1 + T]
        logits = head(h).float()                                          # (B, T, V)
        tgt = self.target_ids.view(1, T, 1).expand(logits.shape[0], T, 1)
        return torch.log_softmax(logits, dim=-1).gather(-1, tgt)[..., 0]

    def logprobs_from_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """(B, L, d) input embeddings -> (B, T) target log-probabilities (differentiable)."""
        return self._forward_logprobs(inputs_embeds=embeds)

    @torch.no_grad()
    def logprobs_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, T) target log-probabilities, ``batch_rows`` rows per forward pass."""
        out = []
        for start in range(0, ids.shape[0], self.batch_rows):
            chunk = ids[start:start + self.batch_rows].to(self.ids.device)
            out.append(self._forward_logprobs(input_ids=chunk))
        return torch.cat(out)

    def source_mask(self) -> torch.Tensor:
        """(T, L) bool: True where source j precedes step t (j < n_prompt + t) and may be attributed."""
        t = torch.arange(self.n_target, device=self.ids.device)[:, None]
        j = torch.arange(self.length, device=self.ids.device)[None, :]
        mask = j < self.n_prompt + t
        return mask if self.sources is None else mask & self.sources[None, :]
