"""The attribution-method registry: ``METHODS.get(name)`` -> an :class:`AttributionMethod` class.

Methods live in :mod:`.gradient` (integrated_gradients, input_x_gradient, saliency) and
:mod:`.perturbation` (feature_ablation, shapley_sampling, attention); they are imported on the
first look-up. Every method returns a (generated, source) score matrix for ALL generated steps
of a :class:`~audit.explain.problem.Problem` at once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..registry import Registry
from .options import ExplainOptions
from .problem import Problem

_METHOD_MODULES = ["gradient", "perturbation"]


def _load() -> None:
    for name in _METHOD_MODULES:
        importlib.import_module(f"{__package__}.{name}")


METHODS: Registry = Registry("attribution method", loader=_load)


@dataclass
class MethodOutput:
    """What a method computed; entries where source j does not precede step t are ignored."""

    scores: torch.Tensor                           # (T, L)
    baseline_logprobs: torch.Tensor | None = None  # (T,) f(baseline), for completeness checks
    target_logprobs: torch.Tensor | None = None    # (T,) f(x), when the method computed it anyway
    info: dict | None = None                       # method-specific settings to record


class AttributionMethod:
    """Base class: fill :meth:`attribute`; set ``uses_baseline`` when the baseline token matters."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_baseline: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = False

    def attribute(self, problem: Problem, options: ExplainOptions) -> MethodOutput:  # pragma: no cover
        raise NotImplementedError
