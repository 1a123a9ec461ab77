"""Right-or-wrong answers: audit.metrics.exact, the exact_match / json_fields attack goals, the quality metrics.

The goals are decided on hand-made answers from a lookup-table model (as tests/test_goals_task.py);
the robustness section runs end to end on builtin:micro with references written from its own
clean answers, so which prompts are right (attacked) and wrong (skipped) is known in advance.

Decisions pinned here (and documented in audit/metrics/exact.py):
- JSON ``null`` equals only ``null``: the string ``"null"`` is a different answer (so is ``""``).
- The number 48213977 is not the string "48213977"; ``true`` is not ``1``.
- exact_match of a JSON reference fails on an extra key; field_matches ignores extra keys.
- A plain label is not forgiven leading words ("Answer: shipping" != "shipping"); a JSON object is.
"""

from __future__ import annotations

import json
from pathlib import Path
import math

import pytest

from audit.metrics.exact import exact_match, field_matches, normalise_answer, parse_json_answer, reference_object

REF = '{"topic": "shipping", "order_number": "48213977", "urgency": "high"}'


# ---- normalise / parse -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Shipping.", "shipping"),
    ('  "Shipping"  ', "shipping"),
    ("'app_bugs'!", "app_bugs"),
    ("App \n  Bugs", "app bugs"),
    ("```\nshipping\n```", "shipping"),
    ("```text\nShipping\n```", "shipping"),
    ("```shipping```", "shipping"),             # no newline: not a language tag
    ("-3.5", "-3.5"),                           # a leading minus is part of the answer
    ("e-mail", "e-mail"),
    ("Answer: shipping", "answer: shipping"),   # leading words are not forgiven for a label
    ("", ""),
])
def test_normalise_answer(text, expected):
    assert normalise_answer(text) == expected


def test_parse_json_answer_finds_the_first_object_and_nothing_else():
    obj = {"topic": "shipping", "order_number": None}
    assert parse_json_answer('{"topic": "shipping", "order_number": null}') == obj
    assert parse_json_answer('```json\n{"topic": "shipping", "order_number": null}\n```') == obj
    assert parse_json_answer('Answer: {"topic": "shipping", "order_number": null} -- hope that helps') == obj
    assert parse_json_answer('Use {braces} sparingly. {"topic": "shipping", "order_number": null}') == obj
    assert parse_json_answer("{}") == {}
    assert parse_json_answer('{"a": {"b": 1}}') == {"a": {"b": 1}}
    for broken in ["shipping", "", '{"topic": "shipping"', "{'topic': 'shipping'}", '{"topic": shipping}',
                   '{"topic": "x", "meta": {"b": 1}']:   # cut off: None, not the inner object
        assert parse_json_answer(broken) is None, broken
    assert parse_json_answer('["topic"]') is None   # a list is no object


def test_reference_object_only_for_references_that_are_objects():
    assert reference_object(REF)["urgency"] == "high"
    assert reference_object("```json\n" + REF + "\n```")["topic"] == "shipping"
    for plain in ["shipping", "", None, 'Say {"topic": "x"}']:   # text mentioning an object is not one
        assert reference_object(plain) is None


# ---- exact_match / field_matches ------------------------------------------------------------------
@pytest.mark.parametrize("pred, ok", [
    (REF, True),
    ('{"urgency":"high","order_number":"48213977","topic":"shipping"}', True),            # key order, spacing
    ('{ "topic" : "Shipping", "order_number": " 48213977 ", "urgency": "HIGH." }', True),  # case, blanks, dot
    ("```json\n" + REF + "\n```", True),                                                   # code fence
    ("Answer: " + REF + "\nLet me know!", True),                                           # words around it
    ('{"topic": "billing", "order_number": "48213977", "urgency": "high"}', False),       # one field wrong
    ('{"topic": "shipping", "order_number": 48213977, "urgency": "high"}', False),        # number != string
    ('{"topic": "shipping", "urgency": "high"}', False),                                  # a missing key
    ('{"topic": "shipping", "order_number": "48213977", "urgency": "high", "x": 1}', False),  # an extra key
    ('{"topic": "shipping", "order_number": "48213977", "urgency": "high"', False),       # cut off
    ("shipping", False),
])
def test_exact_match_of_a_json_reference(pred, ok):
    assert exact_match(pred, REF) is ok


def test_null_matches_only_null():
    ref = '{"topic": "app_bugs", "order_number": null}'
    assert exact_match('{"order_number": null, "topic": "App_Bugs"}', ref)
    assert not exact_match('{"order_number": "null", "topic": "app_bugs"}', ref)
    assert not exact_match('{"order_number": "", "topic": "app_bugs"}', ref)
    assert not exact_match('{"order_number": null, "topic": "app_bugs"}', '{"topic": "app_bugs", "order_number": "null"}')
    assert not exact_match('{"flag": 1}', '{"flag": true}') and exact_match('{"n": 1.0}', '{"n": 1}')


def test_exact_match_of_a_plain_label():
    assert exact_match("Shipping.", "shipping") and exact_match("  'SHIPPING' ", "shipping")
    assert exact_match("app  bugs", "App Bugs")
    assert not exact_match("billing", "shipping")
    assert not exact_match("Answer: shipping", "shipping")
    assert not exact_match("shipping, I think", "shipping")
    assert not exact_match("", "shipping")


def test_field_matches():
    assert field_matches(REF, REF) == {"topic": True, "order_number": True, "urgency": True}
    assert field_matches('{"urgency": "low", "topic": "Shipping", "extra": 1}', REF) == \
        {"topic": True, "order_number": False, "urgency": False}   # missing field False, extra ignored
    assert field_matches("it is about shipping", REF) == {"topic": False, "order_number": False, "urgency": False}
    assert field_matches("", REF) == dict.fromkeys(["topic", "order_number", "urgency"], False)
    assert list(field_matches(REF, REF)) == ["topic", "order_number", "urgency"]   # the reference's order
    with pytest.raises(ValueError, match="JSON-object reference"):
        field_matches("shipping", "shipping")


def test_the_bundled_routing_references_are_objects_that_match_themselves():
    from pathlib import Path

    import audit

    path = Path(audit.__file__).parent / "suites" / "data" / "routing" / "messages.jsonl"
    if not path.exists():
        pytest.skip("routing data not bundled")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert rows and all(exact_match(r["reference"], r["reference"]) for r in rows)
    assert all(set(reference_object(r["reference"])) == {"topic", "order_number", "urgency"} for r in rows)


# ---- the goals on hand-made answers ---------------------------------------------------------------
from audit.attacks import import_textattack  # noqa: E402

import_textattack()
from textattack.goal_function_results import GoalFunctionResultStatus as Status  # noqa: E402
from textattack.shared import AttackedText  # noqa: E402

from audit.attacks.goals import GOALS, GRADED_WEIGHT, ExactMatchGoal, JsonFieldsGoal, make_goal  # noqa: E402

PROMPT = "where is my order 48213977? i need it by friday"
RIGHT = '{"topic": "shipping", "order_number": "48213977", "urgency": "high"}'
REFORMATTED = '```json\n{"urgency": "High", "topic": "shipping", "order_number": "48213977"}\n```'
ONE_WRONG = '{"topic": "shipping", "order_number": "48213977", "urgency": "normal"}'
TWO_WRONG = '{"topic": "billing", "order_number": "48213977", "urgency": "normal"}'


from .test_goals_task import TableModel  # noqa: E402  (answers each prompt from a fixed table)


def decide(goal_name: str, clean: str, perturbed_answer: str, *, ref: str = REF):
    """(status of the clean prompt, status and score of a perturbed prompt answered ``perturbed_answer``)."""
    table = {PROMPT: clean, "perturbed": perturbed_answer}
    goal = make_goal(goal_name, TableModel(table), references={PROMPT: ref})
    clean_result, _ = goal.init_attack_example(AttackedText(PROMPT), clean)
    results, _ = goal.get_results([AttackedText("perturbed")])
    return clean_result.goal_status, results[0].goal_status, results[0].score


def test_goals_are_registered_and_accepted_by_the_section():
    from audit.evaluators.robustness import RobustnessEvaluator

    assert GOALS.get("exact_match") is ExactMatchGoal and GOALS.get("json_fields") is JsonFieldsGoal
    assert ExactMatchGoal.needs_references and JsonFieldsGoal.needs_references
    for goal in ("exact_match", "json_fields"):
        assert RobustnessEvaluator.Options(goal=goal).goal == goal
    with pytest.raises(ValueError, match="did you mean 'exact_match'"):
        RobustnessEvaluator.Options(goal="exact_matc")


def test_exact_match_goal_right_to_wrong_is_a_success():
    clean_status, status, score = decide("exact_match", RIGHT, ONE_WRONG)
    assert clean_status == Status.SEARCHING   # a right clean answer is attacked
    assert status == Status.SUCCEEDED and score == 1.0
    # A non-JSON answer is wrong too.
    assert decide("exact_match", RIGHT, "Your order is on its way.")[1:] == (Status.SUCCEEDED, 1.0)


def test_exact_match_goal_a_reformatted_right_answer_is_no_success_but_has_a_gradient():
    _, status, score = decide("exact_match", RIGHT, REFORMATTED)
    assert status == Status.SEARCHING
    assert 0.0 < score < GRADED_WEIGHT   # moved away from the clean text, still right
    _, status, score = decide("exact_match", RIGHT, RIGHT)
    assert status == Status.SEARCHING and score == 0.0   # unchanged output: no progress


def test_exact_match_goal_skips_a_clean_answer_that_is_already_wrong():
    clean_status, _, _ = decide("exact_match", ONE_WRONG, TWO_WRONG)
    assert clean_status == Status.SKIPPED
    assert decide("exact_match", "billing", "shipping", ref="shipping")[0] == Status.SKIPPED


def test_exact_match_goal_on_a_plain_label():
    clean_status, status, score = decide("exact_match", "Shipping.", "billing", ref="shipping")
    assert clean_status == Status.SEARCHING and status == Status.SUCCEEDED and score == 1.0
    _, status, score = decide("exact_match", "Shipping.", "shipping", ref="shipping")
    assert status == Status.SEARCHING and 0.0 < score < GRADED_WEIGHT


def test_json_fields_goal_counts_only_fields_the_clean_answer_got_right():
    # Clean: topic and order right, urgency already wrong. Breaking urgency further is nothing.
    clean = '{"topic": "shipping", "order_number": "48213977", "urgency": "low"}'
    worse = '{"topic": "shipping", "order_number": "48213977", "urgency": "normal"}'
    clean_status, status, score = decide("json_fields", clean, worse)
    assert clean_status == Status.SEARCHING and status == Status.SEARCHING and score < 0.5 * GRADED_WEIGHT + 1e-9
    # Getting urgency right while breaking the topic is still a broken field: 1 of the 2 clean-right ones.
    _, status, score = decide("json_fields", clean, '{"topic": "billing", "order_number": "48213977", "urgency": "high"}')
    assert status == Status.SUCCEEDED and score == pytest.approx(0.5)
    _, status, score = decide("json_fields", clean, "no idea")
    assert status == Status.SUCCEEDED and score == pytest.approx(1.0)


def test_json_fields_goal_score_ranks_every_success_above_every_non_success():
    _, s_one, one = decide("json_fields", RIGHT, ONE_WRONG)
    _, s_two, two = decide("json_fields", RIGHT, TWO_WRONG)
    _, s_fmt, fmt = decide("json_fields", RIGHT, REFORMATTED)
    _, s_same, same = decide("json_fields", RIGHT, RIGHT)
    assert (s_one, s_two, s_fmt, s_same) == (Status.SUCCEEDED, Status.SUCCEEDED, Status.SEARCHING, Status.SEARCHING)
    assert one == pytest.approx(1 / 3) and two == pytest.approx(2 / 3)
    assert 0.0 == same < fmt < one < two


def test_json_fields_goal_skips_a_clean_answer_with_no_right_field():
    wrong = '{"topic": "billing", "order_number": null, "urgency": "low"}'
    assert decide("json_fields", wrong, RIGHT)[0] == Status.SKIPPED
    assert decide("json_fields", "I cannot answer that", RIGHT)[0] == Status.SKIPPED


def test_goals_without_reference_or_with_a_non_json_reference_raise():
    from audit.errors import AuditError

    for name in ("exact_match", "json_fields"):
        with pytest.raises(ValueError, match="needs references"):
            make_goal(name, TableModel({}), references={})
        goal = make_goal(name, TableModel({PROMPT: RIGHT}), references={"other": REF})
        with pytest.raises(AuditError, match="no reference"):
            goal.init_attack_example(AttackedText(PROMPT), RIGHT)
    goal = make_goal("json_fields", TableModel({PROMPT: "shipping"}), references={PROMPT: "shipping"})
    with pytest.raises(AuditError, match="not a JSON object"):
        goal.init_attack_example(AttackedText(PROMPT), "shipping")


# ---- quality metrics --------------------------------------------------------------------------------
def _quality(samples, metrics=("exact_match", "field_accuracy")):
    from audit.config import GenerationSettings
    from audit.evaluators.base import Context
    from audit.evaluators.quality import QualityEvaluator

    ctx = Context(model=None, samples=samples, settings=GenerationSettings())
    return QualityEvaluator(QualityEvaluator.Options(metrics=list(metrics))).evaluate(ctx)


def _sample(i, reference, *generations):
    from audit.results import SampleRecord

    return SampleRecord(id=f"s{i}", prompt=f"prompt {i}", reference=reference, generations=list(generations))


def test_quality_exact_and_field_accuracy_on_json_answers():
    samples = [
        _sample(0, REF, REFORMATTED, ONE_WRONG),          # right (only the FIRST generation counts)
        _sample(1, REF, ONE_WRONG, RIGHT),                # 2 of 3 fields
        _sample(2, REF, "no idea"),                       # 0 of 3
        _sample(3, None, RIGHT),                          # no reference: skipped
        _sample(4, '{"topic": "app_bugs", "order_number": null, "urgency": "normal"}',
                '{"topic": "app_bugs", "order_number": "null", "urgency": "normal"}'),  # "null" != null: 2 of 3
    ]
    res = _quality(samples)
    m = res.metrics
    assert m["exact_match"] == pytest.approx(1 / 4)
    assert res.sample_values["exact_match"] == [1.0, 0.0, 0.0, 0.0]
    assert m["field_accuracy"] == pytest.approx((1 + 2 / 3 + 0 + 2 / 3) / 4)
    assert m["field_accuracy.topic"] == pytest.approx(3 / 4)
    assert m["field_accuracy.order_number"] == pytest.approx(2 / 4)
    assert m["field_accuracy.urgency"] == pytest.approx(2 / 4)
    assert res.metric_info["exact_match"].higher_is_better and res.metric_info["field_accuracy.topic"].higher_is_better
    assert res.details["exact"]["skipped_no_reference"] == 1 and res.details["exact"]["scored"] == 4
    assert res.details["exact"]["fields"]["topic"] == {"n": 4, "accuracy": pytest.approx(0.75)}
    assert "why_nan" not in res.details
    assert samples[1].scores["quality.field_accuracy"] == pytest.approx(2 / 3)
    assert samples[0].scores["quality.exact_match"] == 1.0 and "quality.exact_match" not in samples[3].scores


def test_quality_plain_labels_give_nan_field_accuracy_with_a_reason():
    samples = [_sample(0, "shipping", "Shipping."), _sample(1, "billing", "shipping"), _sample(2, None, "x")]
    res = _quality(samples)
    assert res.metrics["exact_match"] == pytest.approx(0.5)
    assert math.isnan(res.metrics["field_accuracy"])
    assert "JSON object" in res.details["why_nan"]["field_accuracy"]
    assert not any(k.startswith("field_accuracy.") for k in res.metrics)


def test_quality_without_any_reference_is_an_error():
    from audit.errors import AuditError

    with pytest.raises(AuditError, match="reference"):
        _quality([_sample(0, None, "shipping")])


def test_quality_gate_names_accept_per_field_keys():
    from audit.evaluators.quality import QualityEvaluator

    names = QualityEvaluator.metric_names(QualityEvaluator.Options(metrics=["exact_match", "field_accuracy"]))
    assert "exact_match" in names and "field_accuracy" in names and "field_accuracy.topic" in names
    assert "exact_match.topic" not in names and "chrf" not in names and "field_accuracy." not in names
    only_exact = QualityEvaluator.metric_names(QualityEvaluator.Options(metrics=["exact_match"]))
    assert "field_accuracy.topic" not in only_exact
    with pytest.raises(ValueError, match="metric"):
        QualityEvaluator.Options(metrics=["exact_mach"])


# ---- the robustness section end to end -------------------------------------------------------------
SUITE = """
name: rob-exact
model: {micro}
seed: 3
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 8}}
sections:
  robustness:
    recipes: [deepwordbug]
    goal: {goal}
    examples: 3
    query_budget: 12
    perturbations: []
"""
PROMPTS = ["The application crashes whenever I open settings", "My password reset email never arrived",
           "Please cancel the subscription renewal"]


def _run(tmp_path, micro_path, model, goal, references):
    from audit.runner import run_suite

    from .conftest import write_suite

    rows = [{"id": f"p{i}", "prompt": p, "reference": r} for i, (p, r) in enumerate(zip(PROMPTS, references))]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp_path, SUITE.format(micro=micro_path, goal=goal))
    return run_suite(suite, model=model, out_dir=tmp_path / "o", progress=False, use_cache=False)


def test_section_exact_match_attacks_right_answers_and_skips_wrong_ones(tmp_path, micro_path, micro_lm):
    from audit.config import GenerationSettings

    clean = [g[0] for g in micro_lm.generate(PROMPTS, GenerationSettings(max_new_tokens=8, batch_size=8))]
    assert all(c.strip() for c in clean)
    # p0 and p1: the reference IS the clean answer (right); p2: a reference the answer does not match.
    refs = [clean[0], clean[1], "definitely not what the micro model says"]
    result = _run(tmp_path, micro_path, micro_lm, "exact_match", refs)
    sec = result.sections["robustness"]
    assert sec.error is None
    by_id = {r["id"]: r for r in sec.records}
    assert set(by_id) == {"p0", "p1", "p2"}
    assert {r["goal"] for r in sec.records} == {"exact_match"}
    assert sec.details["attack_settings"]["goal"] == "exact_match"
    assert sec.details["recipes"]["deepwordbug"]["goal"] == "exact_match"
    assert by_id["p2"]["skipped"] and not by_id["p0"]["skipped"] and not by_id["p1"]["skipped"]
    assert sec.details["recipes"]["deepwordbug"]["skipped"] == 1
    for r in (by_id["p0"], by_id["p1"]):
        # A success made the answer wrong; a failure left it right.
        assert r["success"] == (not exact_match(r["perturbed_output"], r["reference"]))
        assert (r["score"] == 1.0) == r["success"]
    attacked = [by_id["p0"], by_id["p1"]]
    assert result.metrics["robustness.attack_success_rate"] == pytest.approx(sum(r["success"] for r in attacked) / 2)


def test_section_without_references_or_json_fails_in_one_line(tmp_path, micro_path, micro_lm):
    result = _run(tmp_path, micro_path, micro_lm, "exact_match", ["a", None, "c"])
    err = result.sections["robustness"].error
    assert err and "exact_match needs a reference" in err and "1 of 3" in err and "\n" not in err
    result = _run(tmp_path, micro_path, micro_lm, "json_fields", [REF, "shipping", REF])
    err = result.sections["robustness"].error
    assert err and "json_fields needs a JSON-object reference" in err and "(first: p1)" in err and "\n" not in err


def test_the_clean_answer_given_decides_the_skip_not_a_new_generation():
    # The section passes the model's clean answer as ground truth; the goal judges THAT answer.
    goal = make_goal("exact_match", TableModel({PROMPT: RIGHT}), references={PROMPT: REF})
    assert goal.init_attack_example(AttackedText(PROMPT), ONE_WRONG)[0].goal_status == Status.SKIPPED
    goal = make_goal("json_fields", TableModel({PROMPT: RIGHT}), references={PROMPT: REF})
    assert goal.init_attack_example(AttackedText(PROMPT), "no idea")[0].goal_status == Status.SKIPPED


def test_a_suite_may_gate_on_a_field_and_exact_goals(tmp_path, micro_path):
    from audit.config import ConfigError
    from audit.suite import load_suite

    from .conftest import write_suite

    (tmp_path / "data.jsonl").write_text(json.dumps({"id": "a", "prompt": "p", "reference": REF}) + "\n")
    body = """
name: route
model: {micro}
data: {{path: data.jsonl}}
sections:
  quality: {{metrics: [exact_match, field_accuracy]}}
  robustness: {{goal: json_fields, perturbations: []}}
gates:
  - {gate}
"""
    suite = load_suite(write_suite(tmp_path, body.format(micro=micro_path, gate="quality.field_accuracy.order_number >= 0.9")))
    assert suite.sections["robustness"].goal == "json_fields"
    with pytest.raises(ConfigError, match="unknown metric"):
        load_suite(write_suite(tmp_path, body.format(micro=micro_path, gate="quality.exact_match.topic >= 0.9")))


def test_the_routing_task_model_is_trained_and_audited_with_one_system_prompt():
    """finetune-routing-smollm2.yaml trains through a system turn; routing-smollm2.yaml must audit with the same."""
    from audit.finetune.config import load_finetune_config
    from audit.suite import load_suite

    suite = load_suite("routing-smollm2")
    ft = load_finetune_config(Path(suite.base_dir) / "finetune-routing-smollm2.yaml")
    assert ft.system_prompt and ft.system_prompt == suite.model.system_prompt
    assert Path(ft.data) == Path(suite.resolve_path(suite.data.path)) and (ft.train_split, suite.data.split) == ("train", "test")
