"""Run a recipe over prompts and turn TextAttack's results into plain records.

One record per attacked example (the schema the report, attribution and hardening read)::

    {"id", "recipe", "original_prompt", "perturbed_prompt", "clean_output", "perturbed_output",
     "reference", "success", "skipped", "score", "words_perturbed", "words_perturbed_pct",
     "queries", "perturbed_word_indices"}

Random transformations (DeepWordBug's random letters) draw from Python's and NumPy's global RNGs;
both are seeded per (seed, recipe, example id) before each attack, so a run is reproducible and
an example's result does not depend on which examples ran before it.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

log = logging.getLogger("audit")


@dataclass
class Target:
    """One prompt to attack, with the model's clean output (the goal's ground truth)."""

    id: str
    prompt: str
    clean_output: str
    reference: str | None = None


def example_seed(seed: int, recipe: str, example_id: str) -> int:
    digest = hashlib.sha256(f"{seed}\x00{recipe}\x00{example_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def attack_targets(attack, targets: Sequence[Target], *, recipe: str, seed: int = 0,
                   progress: bool = False) -> list[dict[str, Any]]:
    """Attack each target with ``attack`` (a ``textattack.Attack``) and return one record per target.

    Example:
        >>> records = attack_targets(attack, [Target("1", "Hi there", clean)], recipe="deepwordbug")  # doctest: +SKIP
        >>> records[0]["success"]  # doctest: +SKIP
        True
    """

    bar = attack_bar(len(targets), f"attack {recipe}") if progress and len(targets) > 1 else None
    records = []
    try:
        for t in targets:
            records.append(_attack_one(attack, t, recipe=recipe, seed=seed))
            if bar:
                bar.update(1)
                bar.set_postfix(success=sum(r["success"] for r in records))
    finally:
        if bar:
            bar.close()
    return records


def attack_lockstep(make_attack: Callable[[str], Any], targets: Sequence[Target], recipes: Sequence[str], *,
                    seed: int = 0, progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Attack every target with every recipe at once; the records :func:`attack_targets` gives, per recipe.

    ``make_attack(recipe)`` builds a fresh ``textattack.Attack`` (a goal function holds the state of
    the example it attacks, so attacks running together cannot share one). All attacks run in
    lockstep (:mod:`audit.attacks.lockstep`): the candidate prompts of every search step of every
    example and recipe reach the model wrapper as one batch, instead of one example's few
    candidates at a time. Each attack seeds and keeps its own random state, so with a
    batch-independent model the records equal those of running the recipes one example at a time.

    Example:
        >>> by_recipe = attack_lockstep(lambda r: build_attack(r, make_goal("output_change", wrapper)),
        ...                             targets, ["deepwordbug", "bad_characters"])  # doctest: +SKIP
    """

    from .lockstep import run_lockstep

    def job(recipe: str, t: Target):
        def run():
            return _attack_one(make_attack(recipe), t, recipe=recipe, seed=seed)
        return run

    pairs = [(r, t) for r in recipes for t in targets]
    bar = attack_bar(len(pairs), f"attack {', '.join(recipes)}") if progress and len(pairs) > 1 else None
    try:
        records = run_lockstep([job(r, t) for r, t in pairs], on_finish=(lambda i, rec: bar.update(1)) if bar else None)
    finally:
        if bar:
            bar.close()
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in recipes}
    for (r, _), rec in zip(pairs, records):
        out[r].append(rec)
    return out


def attack_bar(total: int, desc: str):
    """A count-and-elapsed progress bar with NO time estimate: examples differ by 10x in queries, and in lockstep
    every attack runs at once so the first ones finish late together; tqdm's rate after the first slow example
    mispredicted the end by 8x (``1/12 [08:57<1:38:32]``, done in 12:35)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} examples [{elapsed} elapsed{postfix}]")


def _attack_one(attack, t: Target, *, recipe: str, seed: int) -> dict[str, Any]:
    """Attack one target from its own seed (independent of order and batching) into a record."""
    import numpy as np

    s = example_seed(seed, recipe, t.id)
    random.seed(s)
    np.random.seed(s)
    return to_record(attack.attack(t.prompt, t.clean_output), t, recipe=recipe)


def to_record(result, target: Target, *, recipe: str) -> dict[str, Any]:
    """A TextAttack ``AttackResult`` as a plain record (see the module docstring)."""
    from textattack.attack_results import SkippedAttackResult, SuccessfulAttackResult

    original = result.original_result.attacked_text
    perturbed = result.perturbed_result.attacked_text
    skipped = isinstance(result, SkippedAttackResult)
    # As TextAttack's WordsPerturbed metric: positions whose word differs from the original.
    changed = sorted(original.all_words_diff(perturbed)) if not skipped else []
    if not changed and perturbed.text != original.text:
        # Edits that keep word boundaries but change the text (e.g. invisible characters the word
        # splitter drops): count the modified indices TextAttack tracked instead.
        changed = sorted(perturbed.attack_attrs.get("modified_indices", ()))
    n_words = max(1, len(original.words))
    return {
        "id": target.id,
        "recipe": recipe,
        "original_prompt": original.text,
        "perturbed_prompt": perturbed.text,
        "clean_output": target.clean_output,
        "perturbed_output": str(result.perturbed_result.output),
        "reference": target.reference,
        "success": isinstance(result, SuccessfulAttackResult),
        "skipped": skipped,
        "score": float(result.perturbed_result.score),
        "words_perturbed": len(changed),
        "words_perturbed_pct": 100.0 * len(changed) / n_words,
        "queries": int(result.perturbed_result.num_queries),
        "perturbed_word_indices": [int(i) for i in changed],
    }
