"""JUnit (validated with junitparser), Markdown, comparisons, `audit report` / `audit compare`,
regression gates through the CLI with exit codes 0/1/2, and the pytest plugin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import junitparser
import pytest

from audit.cli import main
from audit.report.compare import write_comparison
from audit.report.junit import render_junit
from audit.report.markdown import md_code, md_escape, render_markdown
from audit.results import AuditResult, GateResult, SectionResult
from tests.conftest import write_suite

SUITE = """name: gate
model: builtin:micro
data: {data}
generation: {{max_new_tokens: {tokens}}}
sections:
  quality: {{}}
  diversity: {{}}
gates:
  - quality.perplexity < 1e9
  - diversity.distinct_1 regression <= 0.02
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory, micro_path):
    tmp = tmp_path_factory.mktemp("gates")
    rows = [{"id": f"r{i}", "prompt": f"Customer: how do I reset password number {i}?\nAgent:",
             "reference": " Open settings and choose reset password."} for i in range(10)]
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp, SUITE.format(data="d.jsonl", tokens=8))
    other = write_suite(tmp, SUITE.format(data="d.jsonl", tokens=9), name="other.yaml")
    # A first run: its results become the baseline (a regression gate without a baseline fails: exit 1).
    assert main(["run", str(suite), "--out", str(tmp / "base"), "-q"]) == 1
    return tmp, suite, other


def _baseline(tmp: Path, distinct_1_offset: float) -> Path:
    """The first run's results with a better (or equal) distinct_1: an earlier, better model."""
    data = json.loads((tmp / "base" / "results.json").read_text())
    data["metrics"]["diversity.distinct_1"] += distinct_1_offset
    path = tmp / f"baseline_{distinct_1_offset}.json"
    path.write_text(json.dumps(data))
    return path


def test_regression_gate_exit_codes(env, capsys):
    tmp, suite, other = env
    within = _baseline(tmp, 0.015)   # current is worse by 0.015 <= 0.02: pass
    past = _baseline(tmp, 0.03)      # worse by 0.03 > 0.02: fail
    assert main(["run", str(suite), "--out", str(tmp / "ok"), "--baseline", str(within), "-q"]) == 0
    assert main(["run", str(suite), "--out", str(tmp / "bad"), "--baseline", str(past), "-q"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  diversity.distinct_1 regression <= 0.02" in out and "worse by 0.03" in out
    # Reports are written even when a gate fails, and say why.
    bad = tmp / "bad"
    assert {p.name for p in bad.iterdir()} >= {"results.json", "samples.jsonl", "report.html", "junit.xml", "summary.md"}
    res = AuditResult.load(bad / "results.json")
    assert res.baseline["path"] == str(past) and res.gates[1].baseline == pytest.approx(res.baseline["metrics"]["diversity.distinct_1"])
    # Another generation setting: refused before generating (exit 2, one line), unless forced.
    capsys.readouterr()
    assert main(["run", str(other), "--out", str(tmp / "x"), "--baseline", str(within), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "generation.max_new_tokens is 8 in the baseline but 9 now" in err
    assert main(["run", str(other), "--out", str(tmp / "forced"), "--baseline", str(within), "--force-baseline", "-q"]) in (0, 1)
    assert "max_new_tokens" in AuditResult.load(tmp / "forced" / "results.json").baseline["incompatible"]
    assert main(["run", str(suite), "--out", str(tmp / "x"), "--baseline", str(tmp / "missing.json"), "-q"]) == 2


def test_junit_is_valid_and_explains_failures(env):
    tmp, suite, _ = env
    xml = junitparser.JUnitXml.fromfile(str(tmp / "bad" / "junit.xml"))
    suites = list(xml)
    assert len(suites) == 1 and suites[0].tests == 4 and suites[0].failures == 1 and suites[0].errors == 0
    cases = {c.name: c for c in suites[0]}
    assert set(cases) == {"quality.perplexity < 1e9", "diversity.distinct_1 regression <= 0.02", "quality", "diversity"}
    assert cases["quality.perplexity < 1e9"].is_passed
    (failure,) = cases["diversity.distinct_1 regression <= 0.02"].result
    assert isinstance(failure, junitparser.Failure)
    assert "value" in failure.message and "threshold >=" in failure.message and "baseline" in failure.message
    assert "worse by" in failure.message


def test_junit_section_error_and_hostile_text():
    r = AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0, passed=False,
                    sections={"tox": SectionResult("tox", error="ValueError: bad \x00 byte <x> & \"q\" ]]>")},
                    gates=[GateResult("tox.rate < 1", "tox.rate", "<", 1.0, None, False, "metric tox.rate is missing")])
    path = Path(os.environ["AUDIT_CACHE"]) / "hostile.xml"
    path.write_text(render_junit(r))
    suite = list(junitparser.JUnitXml.fromfile(str(path)))[0]
    cases = {c.name: c for c in suite}
    assert suite.errors == 1 and suite.failures == 1
    assert isinstance(cases["tox"].result[0], junitparser.Error)
    assert "<x> & \"q\" ]]>" in cases["tox"].result[0].message
    assert "missing" in cases["tox.rate < 1"].result[0].message


def test_markdown_summary_is_inert():
    assert md_escape("<img src=x onerror=alert(1)> [l](http://e) |x| @org/team `c`") == (
        "&lt;img src=x onerror=alert\\(1\\)&gt; \\[l\\]\\(http://e\\) \\|x\\| @\u200borg/team \\`c\\`")
    r = AuditResult(suite={"name": "s|`x`"}, model={"spec": "m"}, generation={}, seed=0, passed=False,
                    sections={"q": SectionResult("q", error="<script>alert(1)</script>")},
                    gates=[GateResult("q.a > 1", "q.a", ">", 1.0, 0.5, False, "0.5 > 1 is false")])
    md = render_markdown(r)
    assert md.startswith("## ⚠️ audit ERROR") and "<script>" not in md and "&lt;script&gt;" in md
    assert "| ❌ | `q.a > 1` | 0.5 |" in md
    assert "`s\\|'x'`" in md       # a code span that cannot close early or split a cell


def test_markdown_summary_carries_no_control_characters():
    """NUL, ESC (ANSI escapes for a terminal that prints summary.md), DEL and C1 become U+FFFD; rows stay one line."""
    hostile = "bad\x00 \x1b[31mred\x1b[0m \x7f\x9b | cell\r\nnext"
    r = AuditResult(suite={"name": f"s{hostile}"}, model={"spec": f"m{hostile}"}, generation={}, seed=0, passed=False,
                    sections={"q": SectionResult("q", error=hostile)},
                    gates=[GateResult("q.a > 1", "q.a", ">", 1.0, 0.5, False, hostile)])
    md = render_markdown(r)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", md)
    assert "\ufffd[31mred" in md
    gate_row = next(line for line in md.splitlines() if line.startswith("| ❌"))
    assert gate_row.endswith("\\| cell next |")                        # the pipe escaped, CR LF collapsed
    assert md_code("a\x1bb|c") == "`a\ufffdb\\|c`"


def test_report_and_compare_commands(env, capsys):
    tmp, _, _ = env
    ok, bad = tmp / "ok" / "results.json", tmp / "bad" / "results.json"
    assert main(["report", str(bad), "--html", str(tmp / "re.html"), "-o", str(tmp / "re.xml"), "-o", str(tmp / "re.md")]) == 0
    assert (tmp / "re.html").read_text().startswith("<!doctype html>")
    assert (tmp / "re.md").read_text().startswith("## ❌ audit FAIL")
    junitparser.JUnitXml.fromfile(str(tmp / "re.xml"))
    assert main(["report", str(bad), "-o", str(tmp / "x.pdf")]) == 2
    assert main(["report", str(tmp / "nope.json"), "--html", str(tmp / "y.html")]) == 2
    assert main(["compare", str(ok), str(bad), "--html", str(tmp / "c.html"), "-o", str(tmp / "c.json"),
                 "-o", str(tmp / "c.md"), "--labels", "v1", "v2"]) == 0
    data = json.loads((tmp / "c.json").read_text())
    assert data["labels"] == ["v1", "v2"] and data["incompatible"] == []
    assert any(m["key"] == "diversity.distinct_1" for m in data["metrics"])
    assert [g["new"]["passed"] for g in data["gates"]] == [True, False]
    assert "v1" in (tmp / "c.html").read_text()
    capsys.readouterr()
    assert main(["compare", str(ok), str(bad)]) == 0
    assert capsys.readouterr().out.startswith("## audit compare")


def test_write_comparison_direction_aware(tmp_path):
    from audit.results import MetricInfo

    def run(acc, ppl):
        sec = SectionResult("q", metrics={"acc": acc, "ppl": ppl}, metric_info={
            "acc": MetricInfo("acc", True), "ppl": MetricInfo("ppl", False, per_sample=False)})
        return AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0, sections={"q": sec},
                           metrics={"q.acc": acc, "q.ppl": ppl})

    write_comparison(run(0.5, 10.0), run(0.6, 12.0), tmp_path / "c.json")
    rows = {m["key"]: m for m in json.loads((tmp_path / "c.json").read_text())["metrics"]}
    assert rows["q.acc"]["change"] == "better" and rows["q.ppl"]["change"] == "worse"
    assert rows["q.ppl"]["delta"] == pytest.approx(2.0) and rows["q.ppl"]["relative"] == pytest.approx(0.2)
    html = write_comparison(run(0.5, 10.0), run(0.6, 12.0), tmp_path / "c.html").read_text()
    assert '<tr data-change="worse">' in html and '<tr data-change="better">' in html
    with pytest.raises(Exception, match="unknown comparison format"):
        write_comparison(run(0.5, 10.0), run(0.6, 12.0), tmp_path / "c.pdf")


@pytest.mark.slow
def test_pytest_plugin_turns_gates_into_items(env):
    tmp, suite, _ = env
    base = _baseline(tmp, 0.03)
    junit = tmp / "plugin.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--rootdir={tmp}", "--audit-suite", str(suite),
           "--audit-model", "builtin:micro", "--audit-baseline", str(base), "--audit-out", str(tmp / "plugin"),
           f"--junitxml={junit}"]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 3 passed" in proc.stdout and "worse by 0.03" in proc.stdout
    cases = {c.name: c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s}
    assert set(cases) == {"quality.perplexity < 1e9", "diversity.distinct_1 regression <= 0.02",
                          "section quality", "section diversity"}
    assert not cases["diversity.distinct_1 regression <= 0.02"].is_passed
    assert (tmp / "plugin" / "report.html").exists()
    # Without --audit-suite the plugin adds nothing.
    (tmp / "test_x.py").write_text("def test_x():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--rootdir={tmp}", "test_x.py"],
                          cwd=tmp, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "1 passed" in proc.stdout
