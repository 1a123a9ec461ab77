"""The task_degradation goal's decision on hand-made cases, next to output_change on the same cases.

The model is a lookup table (prompt text -> answer) behind TextAttack's ``ModelWrapper``: the
goals' decisions are what is under test, so the answers are written by hand to be a faithful
paraphrase, a wrong answer, an unrelated clean answer and an improvement. The robustness section's
goal option is tested on builtin:micro (its one-line error without references, goal names in records).
"""

from __future__ import annotations

import json

import pytest

from audit.attacks import import_textattack

import_textattack()
from textattack.goal_function_results import GoalFunctionResultStatus as Status  # noqa: E402
from textattack.models.wrappers import ModelWrapper  # noqa: E402
from textattack.shared import AttackedText  # noqa: E402

from audit.attacks.goals import TaskDegradation, degradation, make_goal  # noqa: E402
from audit.attacks.similarity import similarity  # noqa: E402

REF = "Go to Settings > Billing > Payment method and add the new card. It is charged next month."
CLEAN = "Open Settings, then Billing, then Payment method, and add the new card there."
PROMPT = "Can I change the payment method on file?"


class TableModel(ModelWrapper):
    """Answers each prompt from a fixed table (unknown prompts get an empty answer)."""

    def __init__(self, table: dict[str, str]):
        self.model = None
        self.table = table

    def __call__(self, prompts):
        return [self.table.get(p, "") for p in prompts]


def decide(goal_name: str, table: dict[str, str], perturbed: str, *, prompt: str = PROMPT, **options):
    """(status of the clean prompt, status and score of ``perturbed``) under a fresh goal."""
    goal = make_goal(goal_name, TableModel(table), **options)
    clean_result, _ = goal.init_attack_example(AttackedText(prompt), table[prompt])
    results, _ = goal.get_results([AttackedText(perturbed)])
    return clean_result.goal_status, results[0].goal_status, results[0].score


def test_a_reworded_but_correct_answer_changes_the_output_and_degrades_nothing():
    # Same facts, other words: "changed output" calls it a successful attack; the task does not.
    paraphrase = "Yes. Settings > Billing > Payment method: add the card; it is charged next month."
    table = {PROMPT: CLEAN, "Can I chnage the payment method on file?": paraphrase}
    assert similarity(paraphrase, CLEAN) <= 0.5                        # output_change's criterion holds
    _, status, _ = decide("output_change", table, "Can I chnage the payment method on file?", max_similarity=0.5)
    assert status == Status.SUCCEEDED
    _, status, score = decide("task_degradation", table, "Can I chnage the payment method on file?",
                              references={PROMPT: REF}, margin=0.1)
    assert status == Status.SEARCHING and score <= 0.1


def test_an_answer_that_loses_the_facts_is_a_task_degradation():
    wrong = "Sorry, I cannot help with that. Please contact us later."
    table = {PROMPT: CLEAN, "Can I change the paymnet method on file?": wrong}
    _, status, score = decide("task_degradation", table, "Can I change the paymnet method on file?",
                              references={PROMPT: REF}, margin=0.1)
    expected = similarity(CLEAN, REF) - similarity(wrong, REF)
    assert score == pytest.approx(expected) and expected > 0.1
    assert status == Status.SUCCEEDED


def test_the_margin_decides_and_is_measured_from_the_clean_answer():
    # The same degraded answer succeeds under a margin below its drop and fails above it.
    worse = "Go to Settings and look around for the card options."
    table = {PROMPT: CLEAN, "x": worse}
    drop = similarity(CLEAN, REF) - similarity(worse, REF)
    assert 0.02 < drop < 0.9
    assert decide("task_degradation", table, "x", references={PROMPT: REF}, margin=drop - 0.01)[1] == Status.SUCCEEDED
    assert decide("task_degradation", table, "x", references={PROMPT: REF}, margin=drop + 0.01)[1] == Status.SEARCHING


def test_an_improved_answer_is_never_a_success():
    table = {PROMPT: "Please contact support.", "y": REF}   # the perturbation made the answer the reference itself
    _, status, score = decide("task_degradation", table, "y", references={PROMPT: REF}, margin=0.05)
    assert score < 0 and status == Status.SEARCHING


def test_a_clean_answer_with_nothing_to_lose_is_skipped_not_failed():
    # A clean answer already (almost) unrelated to the reference cannot drop by the margin.
    table = {PROMPT: "zzz", "z": ""}
    assert similarity("zzz", REF) <= 0.3
    clean_status, _, _ = decide("task_degradation", table, "z", references={PROMPT: REF}, margin=0.3)
    assert clean_status == Status.SKIPPED
    table = {PROMPT: CLEAN, "z": ""}
    assert decide("task_degradation", table, "z", references={PROMPT: REF}, margin=0.3)[0] == Status.SEARCHING


def test_a_prompt_without_reference_and_bad_margins_raise():
    from audit.errors import AuditError

    with pytest.raises(AuditError, match="no reference"):
        decide("task_degradation", {"other": CLEAN, PROMPT: CLEAN}, "q", references={"other": REF}, margin=0.1)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="margin"):
            make_goal("task_degradation", TableModel({}), references={PROMPT: REF}, margin=bad)
    assert degradation(0.5, 0.2) == pytest.approx(0.3)
    assert isinstance(make_goal("task_degradation", TableModel({}), references={PROMPT: REF}), TaskDegradation)


# ---- the robustness section's option ---------------------------------------------------------------
SUITE = """
name: rob-task
model: {micro}
seed: 3
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 8}}
sections:
  robustness:
    recipes: [deepwordbug]
    goal: {goal}
    examples: 2
    query_budget: 8
    perturbations: []
"""
PROMPTS = ["The application crashes whenever I open settings", "My password reset email never arrived",
           "Please cancel the subscription renewal"]


def _suite(tmp_path, micro_path, *, goal: str, references: bool):
    from .conftest import write_suite

    rows = [{"id": f"p{i}", "prompt": p, "reference": "Open settings and choose reset." if references else None}
            for i, p in enumerate(PROMPTS)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write_suite(tmp_path, SUITE.format(micro=micro_path, goal=goal))


def test_section_without_references_fails_with_one_line(tmp_path, micro_path, micro_lm):
    from audit.runner import run_suite

    result = run_suite(_suite(tmp_path, micro_path, goal="task_degradation", references=False), model=micro_lm,
                       out_dir=tmp_path / "o", progress=False, use_cache=False)
    err = result.sections["robustness"].error
    assert err and "task_degradation needs a reference" in err and "\n" not in err


@pytest.mark.parametrize("goal", ["task_degradation", "output_change"])
def test_section_records_and_table_name_their_goal(tmp_path, micro_path, micro_lm, goal):
    from audit.runner import run_suite

    result = run_suite(_suite(tmp_path, micro_path, goal=goal, references=True), model=micro_lm,
                       out_dir=tmp_path / "o", progress=False, use_cache=False)
    sec = result.sections["robustness"]
    assert sec.error is None
    assert sec.records and {r["goal"] for r in sec.records} == {goal}
    assert sec.details["recipes"]["deepwordbug"]["goal"] == goal
    assert sec.details["attack_settings"]["goal"] == goal
    if goal == "task_degradation":   # a success is a real drop vs the reference, by the margin
        for r in sec.records:
            if r["success"]:
                drop = similarity(r["clean_output"], r["reference"]) - similarity(r["perturbed_output"], r["reference"])
                assert drop > 0.1


def test_unknown_goal_and_bad_margin_are_config_errors(tmp_path, micro_path):
    from audit.evaluators.robustness import RobustnessEvaluator

    with pytest.raises(ValueError, match="margin"):
        RobustnessEvaluator.Options(goal="task_degradation", margin=1.5)
    with pytest.raises(ValueError, match="goal"):
        RobustnessEvaluator.Options(goal="task_degradaton")
