"""Training losses: one small module per loss, each citing its paper, all in :data:`LOSSES`.

A loss is a class with an ``Options`` dataclass (validated from the config) and a ``__call__``
that takes the :class:`LossInputs` of one micro-batch (the clean forward pass is shared by all
terms) and returns a scalar. The trainer sums ``weight * loss`` over the configured terms.

Example:
    >>> LOSSES.names()
    ['ce', 'consistency', 'pgd', 'simctg', 'smart', 'unlikelihood', 'unlikelihood_seq']
"""

from __future__ import annotations

import importlib

from ...registry import Registry
from .base import Loss, LossInputs, shift

_LOSS_MODULES = ["ce", "unlikelihood", "unlikelihood_seq", "simctg", "pgd", "smart", "consistency"]


def _load() -> None:
    for name in _LOSS_MODULES:
        importlib.import_module(f"{__name__}.{name}")


LOSSES: Registry = Registry("loss", loader=_load)

__all__ = ["LOSSES", "Loss", "LossInputs", "shift"]
