"""`audit harden` end to end on a prompt-sensitive micro model with a tiny robustness suite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import write_robust_tiny


@pytest.fixture(scope="module")
def sensitive_micro(tmp_path_factory, sensitive_micro_lm):
    path = tmp_path_factory.mktemp("sensitive") / "model"
    sensitive_micro_lm.model.save_pretrained(path)
    sensitive_micro_lm.tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_harden_end_to_end(sensitive_micro, tmp_path):
    write_robust_tiny(tmp_path)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "audit", "harden", "--model", str(sensitive_micro), "--suite", "suite.yaml",
                        "--out", str(out), "--max-steps", "4", "--lr", "3e-3", "--target", "target", "-q"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    summary = json.loads((out / "harden.json").read_text())
    # The exit code is the gates on the hardened model.
    assert p.returncode == (0 if summary["passed_after"] else 1)
    adv = [json.loads(x) for x in (out / "before" / "adversarial.jsonl").read_text().splitlines()]
    assert adv and summary["adversarial_examples"] == len(adv)
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    sources = {r["source"] for r in train}
    assert sources == {"adversarial", "clean"}
    # Adversarial prompts are trained towards the model's clean output on the original prompt.
    for r in (t for t in train if t["source"] == "adversarial"):
        match = next(a for a in adv if a["prompt"] == r["prompt"])
        assert r["target"] == match["target"] and r["prompt"] != match["original_prompt"]
    assert summary["steps"] == 4 and summary["target"] == "target"
    # The targets are the model's own answers cut at max_new_tokens: no eos is taught after them.
    assert "add_eos: false" in (out / "train" / "finetune.yaml").read_text()
    # The re-audit used the hardened model (a new fingerprint), the same suite and seed.
    before = json.loads((out / "before" / "results.json").read_text())
    after = json.loads((out / "after" / "results.json").read_text())
    assert before["model"]["fingerprint"] != after["model"]["fingerprint"]
    assert before["seed"] == after["seed"] and before["suite"]["fingerprint"] == after["suite"]["fingerprint"]
    cmp = json.loads((out / "comparison.json").read_text())
    asr = next(m for m in cmp["metrics"] if m["key"] == "robustness.attack_success_rate")
    assert asr["old"] == before["metrics"]["robustness.attack_success_rate"]
    assert asr["new"] == after["metrics"]["robustness.attack_success_rate"]
    assert (out / "comparison.html").exists() and (out / "comparison.md").exists()
    assert "robustness.attack_success_rate:" in p.stdout


def test_harden_needs_a_robustness_section(tmp_path, micro_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    (tmp_path / "s.yaml").write_text("name: s\ndata: d.jsonl\nsections:\n  diversity: {}\n")
    p = subprocess.run([sys.executable, "-m", "audit", "harden", "--model", str(micro_path), "--suite", "s.yaml", "--out", "o"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "has no robustness section" in p.stderr and p.stderr.strip().count("\n") == 0


def test_harden_stops_when_the_robustness_section_failed(tmp_path, micro_path):
    # A failed attack run is not "no attack succeeded": say why nothing can be trained, exit 2.
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "Customer: how do I reset my password?\nAgent:"}) + "\n")
    (tmp_path / "s.yaml").write_text("name: s\ndata: d.jsonl\ngeneration:\n  max_new_tokens: 2\nsections:\n  robustness:\n"
                                     "    goal: toxicity\n    toxicity_scorer: detoxify\n    perturbations: []\n")
    p = subprocess.run([sys.executable, "-m", "audit", "harden", "--model", str(micro_path), "--suite", "s.yaml", "--out", "o", "-q"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert "robustness section failed on the original model" in last and "ScorerError" in last, p.stderr
    assert "no attack succeeded" not in p.stderr
    assert (tmp_path / "o" / "before" / "results.json").exists()  # the before-audit still shows the failure


def test_harden_with_no_successful_attack_trains_nothing(tmp_path, micro_lm):
    # The random micro model answers every prompt alike: no attack succeeds (documented: model unchanged).
    from audit.harden import harden

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"prompt": f"Customer: reset password {i}?\nAgent:"}) + "\n"
                                              for i in range(2)))
    (tmp_path / "s.yaml").write_text("name: s\ndata: d.jsonl\ngeneration:\n  max_new_tokens: 3\nsections:\n  robustness:\n"
                                     "    examples: 2\n    query_budget: 5\n    perturbations: []\n")
    r = harden(micro_lm, str(tmp_path / "s.yaml"), tmp_path / "o", progress=False, use_cache=False)
    assert r.n_adversarial == 0 and r.model_dir is None and r.train is None
    assert r.after is r.before and r.before.metrics["robustness.attack_success_rate"] == 0
    summary = json.loads((tmp_path / "o" / "harden.json").read_text())
    assert summary["adversarial_examples"] == 0 and summary["steps"] == 0 and summary["model_dir"] is None
    assert not (tmp_path / "o" / "train").exists() and not (tmp_path / "o" / "after").exists()
