"""A results.json of the right schema version but wrong shapes: one line naming the file and the field
(issue 23, defect 7)."""

from __future__ import annotations

import json

import pytest

from audit.cli import main
from audit.results import SCHEMA_VERSION, AuditResult, SectionResult, read_results

BASE = {"schema_version": SCHEMA_VERSION, "suite": {"name": "s"}, "model": {"spec": "m"}, "generation": {}, "seed": 0}


@pytest.mark.parametrize("extra, field", [
    ({"sections": []}, "sections"),
    ({"metrics": []}, "metrics"),
    ({"suite": []}, "suite"),
    ({"metrics": {"q.acc": "high"}}, "metrics.q.acc"),
    ({"gates": [1]}, "gates[0]"),
    ({"gates": {"a": 1}}, "gates"),
    ({"sections": {"q": {"name": "q", "metrics": []}}}, "sections.q.metrics"),
    ({"sections": {"q": {"name": "q", "records": {}}}}, "sections.q.records"),
    ({"sections": {"q": {"name": "q", "metric_info": {"acc": {"name": "acc"}}}}}, "sections.q.metric_info.acc.higher_is_better"),
    ({"samples": [{"id": "a", "prompt": "p", "generations": "text"}]}, "samples[0].generations"),
    ({"samples": [{"id": "a"}]}, "samples[0].prompt"),
    ({"seed": "zero"}, "seed"),
    ({"passed": "yes"}, "passed"),
    ({"surprise": 1}, "surprise"),
])
def test_report_names_the_file_and_the_field(tmp_path, capsys, extra, field):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**BASE, **extra}))
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert str(path) in err and f"field {field}:" in err, err
    assert "rerun with --debug" not in err, err   # a known input error, not an unexpected one
    assert not (tmp_path / "r.html").exists()


def test_a_samples_jsonl_of_the_wrong_shape_names_its_line(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(BASE))
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": "a", "prompt": "p"}) + "\n" + json.dumps([1]) + "\n")
    with pytest.raises(Exception, match=r"samples\.jsonl line 2: expected a mapping") as e:
        read_results(tmp_path / "results.json")
    assert "\n" not in str(e.value)


def test_well_formed_results_still_round_trip():
    sec = SectionResult("q", metrics={"acc": 0.5, "n": 3, "bad": float("nan")}, records=[{"x": 1}], details={"k": [1]})
    r = AuditResult(suite={"name": "s"}, model={}, generation={}, seed=1, sections={"q": sec},
                    metrics={"q.acc": 0.5, "q.n": 3, "q.bad": float("nan")}, baseline=None)
    back = AuditResult.from_json(r.to_json())
    assert back.sections["q"].metrics["acc"] == 0.5 and back.metrics["q.n"] == 3
    assert back.sections["q"].records == [{"x": 1}] and back.to_json() == r.to_json()
