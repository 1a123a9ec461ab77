"""Held-out hardening: no audited (test) prompt, nor a perturbation of one, reaches harden's training set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from audit.errors import AuditError
from audit.finetune.data import TextPair
from audit.harden import LeakError, check_held_out

TEST = ["Customer: My tablet broke. Is that covered?\nAgent:", "Customer: Where is invoice 1234?\nAgent:"]
TRAIN = ["Customer: Can I change the payment method?\nAgent:", "Customer: How do I reset my password?\nAgent:"]


def test_disjoint_training_prompts_pass():
    check_held_out([TextPair(p, " ok") for p in TRAIN], TEST)


@pytest.mark.parametrize("leak", [
    TextPair(TEST[0], " ok", source="clean"),                                           # the test prompt itself
    TextPair("Customer: My tablet brkoe. Is that covered?\nAgent:", " ok", source="adversarial"),   # a typo
    TextPair("customer: my tablet broke is that covered\nagent:", " ok", source="augment"),         # case / punctuation
    TextPair("Customer: zzz\nAgent:", " ok", source="adversarial", meta={"original_prompt": TEST[1]}),  # perturbed from one
])
def test_a_test_prompt_or_a_perturbation_of_one_is_refused(leak):
    with pytest.raises(LeakError, match="held-out prompt"):
        check_held_out([TextPair(TRAIN[0], " ok"), leak], TEST)


def test_audit_perturbations_of_test_prompts_are_caught():
    # What the robustness/consistency perturbations and augmentation produce from a test prompt.
    from audit.perturb import perturb

    for kind in ("typos", "lowercase", "punctuation", "whitespace"):
        variant = perturb(TEST[0], kind, seed=1)
        with pytest.raises(LeakError):
            check_held_out([TextPair(variant, " ok")], TEST)


@pytest.mark.parametrize("name", ["support.jsonl", "support_chat.jsonl"])
def test_the_bundled_support_splits_are_held_out_from_each_other(name):
    # The threshold is set so the real train split passes against the real test split.
    rows = [json.loads(x) for x in (Path("audit/suites/data") / name).read_text().splitlines()]
    train = [TextPair(r["prompt"], r["reference"]) for r in rows if r["split"] == "train"]
    check_held_out(train, [r["prompt"] for r in rows if r["split"] == "test"])


# ---- harden end to end with train_split ----------------------------------------------------------
@pytest.fixture(scope="module")
def sensitive_micro(sensitive_micro_lm):
    return sensitive_micro_lm


QUESTIONS = ["how do I reset my password", "where is my parcel today", "can I pay with a new card",
             "why was I charged twice", "my screen cracked after a fall", "how long is the warranty",
             "cancel my subscription please", "the app crashes when opening settings"]


def _suite(tmp_path: Path) -> Path:
    rows = [{"id": f"q{i}", "prompt": f"Customer: {q}?\nAgent:", "reference": " Open settings and choose reset.",
             "split": "test" if i < 3 else "train"} for i, q in enumerate(QUESTIONS)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(
        "name: heldout\nseed: 0\ndata:\n  path: data.jsonl\n  split: test\ngeneration:\n  max_new_tokens: 4\n"
        "sections:\n  robustness:\n    recipes: [deepwordbug]\n    examples: 5\n    query_budget: 10\n"
        "    max_similarity: 0.9\n    perturbations: []\n"
        "gates:\n  - robustness.attack_success_rate <= 1\n  - robustness.attack_success_rate regression <= 1\n")
    return tmp_path / "suite.yaml"


def test_harden_with_train_split_never_trains_on_audited_prompts(tmp_path, sensitive_micro):
    from audit.harden import harden

    r = harden(sensitive_micro, str(_suite(tmp_path)), tmp_path / "o", config={"max_steps": 2}, progress=False,
               use_cache=False, train_split="train")
    test_prompts = [f"Customer: {q}?\nAgent:" for q in QUESTIONS[:3]]
    train_prompts = {f"Customer: {q}?\nAgent:" for q in QUESTIONS[3:]}
    assert [s.prompt for s in r.before.samples] == test_prompts == [s.prompt for s in r.after.samples]
    assert r.n_adversarial > 0, "the sensitive micro model should be attackable"
    rows = [json.loads(x) for x in (tmp_path / "o" / "train.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["prompt"] not in test_prompts and row.get("original_prompt") not in test_prompts
        assert (row.get("original_prompt") or row["prompt"]) in train_prompts   # built from the train split only
    check_held_out([TextPair(x["prompt"], x["target"], meta=x) for x in rows], test_prompts)
    assert json.loads((tmp_path / "o" / "harden.json").read_text())["held_out"] is True
    # Every record has a reference: target auto trains towards the references (ending in eos, as written).
    assert json.loads((tmp_path / "o" / "harden.json").read_text())["target"] == "reference"
    assert {row["target"] for row in rows} == {" Open settings and choose reset."}
    assert yaml.safe_load((tmp_path / "o" / "train" / "finetune.yaml").read_text())["add_eos"] is True
    # Regression gates hold the hardened model to the original: the after audit's baseline is the before
    # audit; the before audit has nothing to regress from and is gated by the absolute gates alone.
    assert [g.expression for g in r.before.gates] == ["robustness.attack_success_rate <= 1"]
    regression = r.after.gates[1]
    assert regression.baseline == r.before.metrics["robustness.attack_success_rate"] and regression.passed


def test_harden_refuses_to_attack_the_audited_split(tmp_path, micro_lm):
    from audit.harden import harden

    with pytest.raises(AuditError, match="train_split 'test' is the split the suite audits"):
        harden(micro_lm, str(_suite(tmp_path)), tmp_path / "o", progress=False, use_cache=False, train_split="test")


def test_attack_recipes_train_on_one_recipe_and_audit_all(tmp_path, sensitive_micro):
    """--attack-recipe: the train split is attacked with the named recipe only; the others are audited
    before and after (transfer) but none of their attacks reaches the training set."""
    from audit.harden import harden

    path = _suite(tmp_path)
    path.write_text(path.read_text().replace("recipes: [deepwordbug]", "recipes: [deepwordbug, pruthi]"))
    r = harden(sensitive_micro, str(path), tmp_path / "o", config={"max_steps": 1}, progress=False, use_cache=False,
               train_split="train", attack_recipes=["deepwordbug"])
    assert {"attack_success_rate_deepwordbug", "attack_success_rate_pruthi"} <= set(r.after.sections["robustness"].metrics)
    rows = [json.loads(x) for x in (tmp_path / "o" / "train.jsonl").read_text().splitlines()]
    adversarial = [row for row in rows if row["source"] == "adversarial"]
    assert adversarial and {row["recipe"] for row in adversarial} == {"deepwordbug"}
    with pytest.raises(AuditError, match="not in the suite's robustness recipes"):
        harden(sensitive_micro, str(path), tmp_path / "o2", progress=False, train_split="train", attack_recipes=["pwws"])
    with pytest.raises(AuditError, match="needs train_split"):
        harden(sensitive_micro, str(path), tmp_path / "o3", progress=False, attack_recipes=["deepwordbug"])
