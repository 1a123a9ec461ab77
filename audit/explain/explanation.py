"""The result of explaining one generation: plain data that round-trips through JSON.

Layout: the model saw ``source_tokens`` = prompt tokens followed by the generated (target) tokens.
``attributions[t][j]`` is how much source token ``j`` contributed to the log-probability of
generated token ``t`` (``target_tokens[t]`` = ``source_tokens[n_prompt + t]``). Only tokens before
the one being predicted are its sources, so ``attributions[t][j]`` is ``None`` for
``j >= n_prompt + t``. Positive values raised the token's log-probability, negative lowered it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faithfulness:
    """Does removing what the explanation calls important hurt more than removing random tokens?

    For each generated step, its ``k`` top-attributed prompt tokens are replaced with the baseline
    token and the drop in that step's target log-probability is compared with the mean drop when
    ``k`` random prompt tokens are replaced instead (``n_random`` draws, shared by all steps).
    Template tokens are never replaced. Drops are in nats.
    """

    k: int                                  # tokens replaced per row (capped at the prompt's tokens - 1)
    n_random: int                           # random draws, shared by all steps
    drop_top: list[float]                   # per evaluated step: log p(x) - log p(x without top-k)
    drop_random: list[float]                # per evaluated step: mean drop over the random draws
    steps: list[int]                        # which generated steps were evaluated (all, if >= 2 prompt tokens)

    @property
    def score(self) -> float:
        """Mean over steps of ``drop_top - drop_random`` (> 0: better than random)."""
        d = [a - b for a, b in zip(self.drop_top, self.drop_random)]
        return sum(d) / len(d) if d else math.nan

    @property
    def win_rate(self) -> float:
        """Share of steps where the top-k deletion dropped the log-probability more than random."""
        w = [a > b for a, b in zip(self.drop_top, self.drop_random)]
        return sum(w) / len(w) if w else math.nan


@dataclass
class Explanation:
    """Token-level attribution of one generation.

    Example:
        >>> from audit.explain import explain
        >>> e = explain("builtin:micro", "The value is", max_new_tokens=3)  # doctest: +SKIP
        >>> e.target_tokens, len(e.attributions) == len(e.target_tokens)  # doctest: +SKIP
    """

    prompt: str
    target: str
    method: str
    source_tokens: list[str]                # readable text of every token the model saw
    n_prompt: int                           # the first n_prompt source tokens are the prompt
    token_ids: list[int]
    attributions: list[list[float | None]]  # (generated, source); None where j is not a source of t
    target_logprobs: list[float]            # log p(target token t | sources of t), per step
    baseline_logprobs: list[float] | None = None   # IG: the same with every source set to the baseline
    convergence_delta: list[float] | None = None   # IG: sum(attributions[t]) - (f(x) - f(baseline))
    complete: bool | None = None            # IG: every step within settings["completeness_tolerance"]; False:
                                            # the refinement hit its cap, scores are approximate (flagged)
    excluded: list[int] = field(default_factory=list)   # prompt tokens outside the user's words (chat
                                            # template): never attributed, moved, ablated or deleted
    user_spans: list[list[int]] | None = None   # [start, end) of the user's words in ``prompt`` (rendered)
    faithfulness: Faithfulness | None = None
    settings: dict[str, Any] = field(default_factory=dict)   # method, steps, baseline token, ...
    model: dict[str, Any] = field(default_factory=dict)      # spec and weights fingerprint
    seconds: float = 0.0

    # ---- views ---------------------------------------------------------------------------
    @property
    def prompt_tokens(self) -> list[str]:
        return self.source_tokens[:self.n_prompt]

    @property
    def target_tokens(self) -> list[str]:
        return self.source_tokens[self.n_prompt:]

    def prompt_attribution(self) -> list[float]:
        """Total attribution of each prompt token, summed over all generated steps (0 for excluded tokens)."""
        return [sum(row[j] or 0.0 for row in self.attributions) for j in range(self.n_prompt)]

    def top_sources(self, step: int, k: int = 3) -> list[tuple[int, str, float]]:
        """The ``k`` sources with the largest attribution for generated ``step``: (index, token, score)."""
        row = [(j, v) for j, v in enumerate(self.attributions[step]) if v is not None]
        row.sort(key=lambda p: -p[1])
        return [(j, self.source_tokens[j], v) for j, v in row[:k]]

    def completeness_error(self) -> float | None:
        """Largest relative completeness gap over steps, ``|delta| / max(|f(x) - f(b)|, 1e-3)`` (IG only).

        The 1e-3 nats floor keeps steps whose baseline predicts as well as the input (nothing to
        distribute) from dividing a rounding error by almost zero.
        """
        if self.convergence_delta is None or self.baseline_logprobs is None:
            return None
        return completeness_error(self.convergence_delta, self.target_logprobs, self.baseline_logprobs)

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.faithfulness is not None:
            d["faithfulness"]["score"] = _num(self.faithfulness.score)
            d["faithfulness"]["win_rate"] = _num(self.faithfulness.win_rate)
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Explanation":
        d = dict(d)
        f = d.get("faithfulness")
        if f is not None:
            names = {x.name for x in fields(Faithfulness)}
            d["faithfulness"] = Faithfulness(**{k: v for k, v in f.items() if k in names})
        names = {x.name for x in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        return cls.from_dict(json.loads(text))


def _num(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return _num(obj)
    return obj


def completeness_error(delta, fx, fb) -> float:
    """Largest ``|delta| / max(|f(x) - f(b)|, 1e-3)`` over steps: the completeness gap relative to what there was to explain.

    Example:
        >>> completeness_error([0.1, -0.5], [-1.0, -2.0], [-3.0, -7.0])
        0.1
    """
    return max((abs(d) / max(abs(a - b), 1e-3) for d, a, b in zip(delta, fx, fb)), default=0.0)
