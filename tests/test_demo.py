"""The README's main job: `audit demo` on the embedded builtin:tiny model, offline, end to end."""

from __future__ import annotations

import json

import pytest

from audit.cli import main
from audit.results import AuditResult


@pytest.mark.slow
def test_demo_end_to_end_and_reproducible(tmp_path, capsys):
    # Builds builtin:tiny on first use (about a minute on one core), then audits it with every section.
    assert main(["demo", "--out", str(tmp_path / "a"), "-q", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "audit demo on builtin:tiny: PASS" in out
    for name in ("results.json", "samples.jsonl", "report.html", "junit.xml", "summary.md", "adversarial.jsonl"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    a = AuditResult.load(tmp_path / "a" / "results.json")
    assert set(a.sections) == {"quality", "diversity", "toxicity", "bias", "robustness", "consistency", "attribution"}
    assert not a.errors
    assert a.passed and len(a.gates) >= 5
    assert len(a.samples) == a.data["records"] > 40 and all(s.generations[0].strip() for s in a.samples)
    assert "heatmap" in (tmp_path / "a" / "report.html").read_text()
    first = json.loads((tmp_path / "a" / "adversarial.jsonl").read_text().splitlines()[0])
    assert first["prompt"] != first["original_prompt"]

    # Same suite + model + seed, nothing cached: identical metrics.
    assert main(["demo", "--out", str(tmp_path / "b"), "-q", "--no-cache"]) == 0
    b = AuditResult.load(tmp_path / "b" / "results.json")
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        assert a.metrics[k] == b.metrics[k] or (a.metrics[k] != a.metrics[k] and b.metrics[k] != b.metrics[k]), k
