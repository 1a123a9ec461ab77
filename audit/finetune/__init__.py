"""Fine-tuning with adversarial and diversity-regularised losses: a pure training library.

Public API (imported lazily, so ``import audit.finetune`` stays light):

- :func:`finetune` (``audit finetune CONFIG.yaml``): train a causal LM with weighted losses.
- :class:`FinetuneConfig`, :func:`load_finetune_config`: the typed configuration.
- :data:`LOSSES`: the registry of training losses (``ce``, ``unlikelihood``, ``unlikelihood_seq``,
  ``simctg``, ``pgd``, ``smart``).

The harden loop (attack, fine-tune, re-audit), which runs audits, sits above this package beside
the runner: :mod:`audit.harden`.
"""

from __future__ import annotations

from .losses import LOSSES

__all__ = ["LOSSES", "FinetuneConfig", "load_finetune_config", "finetune", "Trainer", "TrainResult"]


def __getattr__(name):
    if name in ("FinetuneConfig", "load_finetune_config"):
        from . import config

        return getattr(config, name)
    if name == "finetune":
        from .run import finetune

        return finetune
    if name in ("Trainer", "TrainResult", "TrainingDiverged"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'audit.finetune' has no attribute {name!r}")
