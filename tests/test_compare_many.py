"""`audit compare` of N runs: the leaderboard with intervals, deltas from a reference run, paired
significance tests on per-sample scores (Holm-corrected), gate summaries, refusal of runs of other
suites or data, and escaping of every string in the HTML."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audit.cli import main
from audit.report.browser import Page, find_chromium
from audit.report.compare import leaderboard
from audit.results import AuditResult, GateResult, MetricInfo, SampleRecord, SectionResult
from audit.stats import compute_intervals, paired_permutation_test

N = 30
REF = np.random.default_rng(0).uniform(0.2, 0.6, N)


def run(values, *, model="m", suite="s", ids=None, corpus=0.5, passed=True, fingerprint="fp1") -> AuditResult:
    """A run with a per-sample metric ``q.score`` (per-sample scores by id) and a corpus metric ``q.corpus``."""
    values = [float(v) for v in values]
    ids = ids or [f"p{i}" for i in range(len(values))]
    sec = SectionResult("q", metrics={"score": float(np.mean(values)), "corpus": corpus},
                        metric_info={"score": MetricInfo("score", True), "corpus": MetricInfo("corpus", False, per_sample=False)},
                        sample_values={"score": values})
    r = AuditResult(suite={"name": suite, "version": "1"}, model={"spec": model}, generation={"max_new_tokens": 8}, seed=0,
                    sections={"q": sec}, metrics={"q.score": float(np.mean(values)), "q.corpus": corpus},
                    samples=[SampleRecord(id=i, prompt=f"prompt {i}", scores={"q.score": v}) for i, v in zip(ids, values)],
                    gates=[GateResult("q.score >= 0.45", "q.score", ">=", 0.45, float(np.mean(values)), passed, "")],
                    passed=passed, data={"split": "test", "records": len(values), "fingerprint": fingerprint})
    r.intervals = compute_intervals(r)
    return r


def three_runs():
    noise = np.random.default_rng(1).normal(0, 0.05, N)
    better = run(REF + 0.1, model="better-model")              # every sample up by 0.1: real
    same = run(REF + noise - noise.mean() + 0.002, model="noisy-model", passed=False)   # +0.002 on average in noise
    return run(REF, model="reference-model"), better, same


def save(tmp_path, runs, names):
    return [str(r.save(tmp_path / n)) for r, n in zip(runs, names)]


def test_paired_permutation_test_exact_and_sampled():
    # Five differences all positive: exactly 2 of the 32 sign patterns are as extreme.
    assert paired_permutation_test([0] * 5, [1, 2, 1, 3, 1]) == pytest.approx(2 / 32)
    assert paired_permutation_test([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert math.isnan(paired_permutation_test([math.nan], [1.0]))
    rng = np.random.default_rng(3)
    a = rng.normal(size=200)
    assert paired_permutation_test(a, a + 0.3 + rng.normal(0, 0.1, 200), seed=1) < 0.001
    noise = rng.normal(0, 0.1, 200)
    assert paired_permutation_test(a, a + noise - noise.mean() + 0.001, seed=1) > 0.05
    # The exact version agrees with scipy's paired permutation test (every sign pattern enumerated).
    from scipy.stats import permutation_test

    x, y = rng.normal(size=10), rng.normal(0.5, 1, size=10)
    want = permutation_test((x, y), lambda u, v: np.mean(v - u), permutation_type="samples",
                            n_resamples=np.inf, alternative="two-sided").pvalue
    assert paired_permutation_test(x, y) == pytest.approx(want)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_permutation_test([1.0], [1.0, 2.0])


def test_three_runs_one_difference_significant_one_not(tmp_path, capsys):
    paths = save(tmp_path, three_runs(), ["ref", "better", "noisy"])
    out = tmp_path / "board"
    assert main(["compare", *paths, "--html", str(out) + ".html", "-o", str(out) + ".json", "-o", str(out) + ".md"]) == 0
    data = json.loads((tmp_path / "board.json").read_text())
    assert data["kind"] == "leaderboard" and data["reference_label"] == "ref"
    ref, better, noisy = data["runs"]
    assert [r["label"] for r in data["runs"]] == ["ref", "better", "noisy"] and ref["reference"]
    b, n = better["cells"]["q.score"], noisy["cells"]["q.score"]
    assert b["delta"] == pytest.approx(0.1) and b["n"] == N and b["p_holm"] < 0.001
    assert b["significant"] is True and b["verdict"] == "significantly better"
    assert n["delta"] == pytest.approx(0.002) and n["p_holm"] > 0.05
    assert n["significant"] is False and n["verdict"] == "not significant"
    assert b["low"] is not None and b["low"] < b["value"] < b["high"]          # each run's own interval
    # The corpus-level metric is never tested, and says why.
    assert noisy["cells"]["q.corpus"]["p"] is None and noisy["cells"]["q.corpus"]["verdict"] == "not paired: corpus-level metric"
    assert ref["cells"]["q.score"]["verdict"] == "reference" and ref["cells"]["q.score"]["delta"] is None
    # Gate summary per run.
    assert [(r["passed"], r["gates_passed"], r["gates"]) for r in data["runs"]] == [(True, 1, 1), (True, 1, 1), (False, 0, 1)]
    assert noisy["failed_gates"] == ["q.score >= 0.45"]
    md = (tmp_path / "board.md").read_text()
    row = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "🟢 significant" in row["better"] and "not significant" not in row["better"]
    assert "not significant" in row["noisy"] and "🟢" not in row["noisy"] and "❌ 0/1" in row["noisy"]
    html = (tmp_path / "board.html").read_text()
    assert html.count('data-verdict="significantly better"') == 1 and html.count('data-verdict="not significant"') == 1
    # With no output the Markdown is printed; --reference picks another run to test against.
    capsys.readouterr()
    assert main(["compare", *paths, "--reference", "2", "--labels", "A", "B", "C"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## audit compare: 3 runs against B")


def test_holm_corrects_across_the_metrics_of_a_run():
    ref, better, _ = three_runs()
    data = leaderboard([ref, better])
    c = data["runs"][1]["cells"]["q.score"]
    assert c["p_holm"] == pytest.approx(c["p"])           # one metric tested: nothing to correct
    for r in (ref, better):                                # a second per-sample metric, no change at all
        r.metrics["q.flat"] = 0.5
        r.sections["q"].metric_info["flat"] = MetricInfo("flat", True)
        for s in r.samples:
            s.scores["q.flat"] = 0.5
    cells = leaderboard([ref, better])["runs"][1]["cells"]
    assert cells["q.flat"]["p"] == 1.0 and cells["q.score"]["p_holm"] == pytest.approx(min(1.0, 2 * c["p"]))


def test_metric_selection_is_the_holm_family(tmp_path, capsys):
    ref, better, noisy = three_runs()
    data = leaderboard([ref, better, noisy], metrics=["q.score"])
    assert [m["key"] for m in data["metrics"]] == ["q.score"] and list(data["runs"][1]["cells"]) == ["q.score"]
    assert [m["key"] for m in leaderboard([ref, better], metrics=["q"])["metrics"]] == ["q.score", "q.corpus"]
    paths = save(tmp_path, [ref, better, noisy], ["ref", "better", "noisy"])
    capsys.readouterr()
    assert main(["compare", *paths, "--metric", "q.nope"]) == 2
    assert "--metric q.nope: no run has this metric or section" in capsys.readouterr().err
    assert main(["compare", *paths[:2], "--metric", "q.score"]) == 2          # two-run page has no columns to pick
    assert main(["compare", *paths[:2], "--metric", "q.score", "--leaderboard"]) == 0
    assert capsys.readouterr().out.startswith("## audit compare: 2 runs against ref")


def test_a_metric_without_a_direction_is_significantly_different():
    ref, better, _ = three_runs()
    for r in (ref, better):
        del r.sections["q"].metric_info["score"]
    board = leaderboard([ref, better])["runs"][1]
    assert board["cells"]["q.score"]["verdict"] == "significantly different"
    assert board["summary"]["significantly different"] == 1 and board["summary"]["significantly better"] == 0


def test_samples_that_do_not_line_up_are_not_tested():
    ref = run(REF)
    other = run(REF + 0.1, ids=[f"x{i}" for i in range(N)])     # same data fingerprint recorded, other ids
    cell = leaderboard([ref, other])["runs"][1]["cells"]["q.score"]
    assert cell["p"] is None and cell["significant"] is None
    assert cell["verdict"] == "not paired: samples don't line up (30 in the reference, 30 here, 0 in common)"
    assert cell["delta"] == pytest.approx(0.1)                  # the delta is still shown
    # Per-sample scores that are not the metric's values (a metric computed some other way) are not paired either.
    shifted = run(REF + 0.1)
    shifted.metrics["q.score"] += 1.0
    assert leaderboard([ref, shifted])["runs"][1]["cells"]["q.score"]["verdict"] == \
        "not paired: the metric is not the mean of its per-sample scores"


def test_a_sample_without_a_score_in_one_run_still_pairs_the_others():
    """A sample too short for a metric has NaN in one run and a value in the other: the samples still
    line up; the test runs on the pairs with both values (seen on builtin:tiny greedy vs sampled, rep_3)."""
    ref, better = run(REF), run(REF + 0.1)
    ref.samples[0].scores["q.score"] = math.nan
    ref.metrics["q.score"] = ref.sections["q"].metrics["score"] = float(np.mean(REF[1:]))
    cell = leaderboard([ref, better])["runs"][1]["cells"]["q.score"]
    assert cell["n"] == N - 1 and cell["significant"] is True and cell["verdict"] == "significantly better"
    for r in (ref, better):
        for s in r.samples:
            s.scores["q.score"] = math.nan
    assert leaderboard([ref, better])["runs"][1]["cells"]["q.score"]["verdict"] == \
        "not paired: no finite per-sample scores in the reference"


def test_runs_of_other_suites_or_data_are_refused_unless_forced(tmp_path, capsys):
    ref, better, _ = three_runs()
    other_suite = run(REF, suite="other")
    other_data = run(REF, fingerprint="fp2")
    paths = save(tmp_path, [ref, better, other_suite, other_data], ["ref", "better", "suite2", "data2"])
    capsys.readouterr()
    assert main(["compare", paths[0], paths[1], paths[2], "-o", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'suite2'" in err and "suite is 's' in the reference but 'other' here" in err and "--force" in err
    assert not (tmp_path / "b.json").exists()
    assert main(["compare", paths[0], paths[3]]) == 2                     # two runs: refused as well
    assert "the prompt set (data fingerprint) is 'fp1' in the reference but 'fp2' here" in capsys.readouterr().err
    assert main(["compare", paths[0], paths[1], paths[2], "--force", "-o", str(tmp_path / "b.json")]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert list(data["forced"]) == ["suite2"] and "suite is 's'" in data["runs"][2]["notes"][0]
    # A seed or generation setting may differ between candidates: noted, not refused.
    seeded = run(REF)
    seeded.seed, seeded.generation = 1, {"max_new_tokens": 16}
    notes = leaderboard([ref, seeded])["runs"][1]["notes"]
    assert notes == ["seed is 0 in the reference but 1 here", "generation.max_new_tokens is 8 in the reference but 16 here"]
    # Usage errors: one line, exit 2.
    assert main(["compare", paths[0]]) == 2
    assert main(["compare", paths[0], paths[1], "--labels", "a", "b", "c"]) == 2
    assert main(["compare", paths[0], paths[1], "--reference", "5"]) == 2
    assert "--reference 5" in capsys.readouterr().err


HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _hostile_board(tmp_path):
    ref, better, noisy = three_runs()
    better.model["spec"] = "/models/" + HOSTILE
    noisy.gates[0].expression = "q.score >= 0.45 " + HOSTILE
    paths = save(tmp_path, [ref, better, noisy], ["ref", "better", "noisy"])
    html = tmp_path / "board.html"
    assert main(["compare", *paths, "--labels", "ref", "x" + HOSTILE, "noisy", "--html", str(html)]) == 0
    return html


def test_html_escapes_run_labels_models_and_gates(tmp_path):
    text = _hostile_board(tmp_path).read_text()
    assert "<script>window" not in text and "<img" not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert text.count("<script") == 1                              # only our nonce'd sorting script


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")
def test_leaderboard_in_chromium_sorts_and_runs_nothing_injected(tmp_path):
    html = _hostile_board(tmp_path)
    with Page(width=1400, height=900) as page:
        page.open(html)
        assert page.eval("document.documentElement.getAttribute('data-report-ready')") == "1"
        assert page.eval("typeof window.__pwned") == "undefined"
        assert page.eval("document.querySelectorAll('img, [onerror]').length") == 0
        order = "Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.dataset.run).join()"
        col = "Array.from(document.querySelectorAll('#board thead th')).findIndex(th => th.textContent.includes('q.score'))"
        page.eval(f"document.querySelectorAll('#board thead th')[{col}].click()")
        assert page.eval(order) == "0,2,1"                         # ascending q.score: ref < noisy (+0.002) < better
        page.eval(f"document.querySelectorAll('#board thead th')[{col}].click()")
        assert page.eval(order) == "1,2,0"
        assert page.problems() == []
