"""TextAttack glue for generation models: offline data, model wrapper, goal functions, recipes.

Importing ``audit.attacks`` is cheap; TextAttack (several seconds to import) loads only when a
wrapper, goal or attack is built. Public pieces:

- :data:`RECIPES` / :func:`build_attack` (:mod:`.recipes`): named ``Attack(goal, constraints,
  transformation, search)`` compositions that run offline.
- :class:`GenerationModelWrapper` (:mod:`.wrapper`): batched, cached TextAttack model wrapper over
  :class:`audit.models.local.LanguageModel`.
- :func:`make_goal` and the goals ``output_change``, ``non_overlapping``, ``toxicity``, ``task_degradation``,
  ``exact_match`` and ``json_fields`` (:mod:`.goals`).
- :func:`attack_targets` (:mod:`.run`): run a recipe over prompts into plain records;
  :func:`attack_lockstep`: every recipe over every prompt at once, queries batched across attacks.
- :func:`write_adversarial_jsonl` (:mod:`.export`): successful attacks as training data.

Example:
    >>> from audit.attacks import RECIPES
    >>> "deepwordbug" in RECIPES
    True
"""

from __future__ import annotations

from .offline import MissingAttackDataError, import_textattack
from .recipes import RECIPES, build_attack, check_data

#: Goal names a suite may give (``audit.attacks.goals.GOALS`` registers the classes).
GOAL_NAMES = ("output_change", "non_overlapping", "toxicity", "task_degradation", "exact_match", "json_fields")

_LAZY = {
    "GenerationModelWrapper": ".wrapper",
    "make_goal": ".goals",
    "GOALS": ".goals",
    "attack_targets": ".run",
    "attack_lockstep": ".run",
    "Target": ".run",
    "write_adversarial_jsonl": ".export",
}

__all__ = ["GOAL_NAMES", "MissingAttackDataError", "RECIPES", "build_attack", "check_data", "import_textattack", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
