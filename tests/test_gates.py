"""Gates: thresholds, confidence bounds, baseline regressions (direction-aware), NaN/missing, baselines."""

from __future__ import annotations

import math

import pytest

from audit.baseline import BaselineError, check_baseline, identity, incompatibilities
from audit.config import ConfigError
from audit.suite import parse_suite
from audit.gates import Gate, apply_gates, evaluate_gate, parse_gate
from audit.results import AuditResult, MetricInfo, SectionResult


def _result(values=None, *, rate=None, seed=0):
    """Section `s`: `acc` (higher is better, per-sample), `ppl` (lower is better, corpus-level), `tox` (rate)."""
    values = values if values is not None else [0.6, 0.7, 0.8, 0.9]
    rate = rate if rate is not None else [0.0] * 20
    sec = SectionResult("s", metrics={"acc": sum(values) / len(values), "ppl": 50.0, "tox": sum(rate) / len(rate)},
                        metric_info={"acc": MetricInfo("acc", True), "ppl": MetricInfo("ppl", False, per_sample=False),
                                     "tox": MetricInfo("tox", False)},
                        sample_values={"acc": values, "tox": rate})
    return AuditResult(suite={"name": "x", "version": "1"}, model={}, generation={"max_new_tokens": 8}, seed=seed,
                       sections={"s": sec}, metrics={f"s.{k}": v for k, v in sec.metrics.items()})


# ---- parsing ------------------------------------------------------------------------------------
def test_parse_forms():
    g = parse_gate("s.acc >= 0.5")
    assert (g.metric, g.op, g.threshold, g.confidence, g.kind) == ("s.acc", ">=", 0.5, None, "threshold")
    assert parse_gate("s.tox <= 0.02 @ 95%").confidence == 0.95
    assert parse_gate("s.tox <= 0.02 @ 0.9").confidence == 0.9
    r = parse_gate("s.ppl regression <= 5%")
    assert (r.kind, r.max_regression, r.relative) == ("regression", 0.05, True)
    r = parse_gate({"metric": "s.acc", "max_regression": 0.02, "confidence": "90%", "resamples": 500})
    assert (r.max_regression, r.relative, r.confidence, r.resamples) == (0.02, False, 0.9, 500)
    assert parse_gate({"metric": "s.acc", "op": ">", "value": 1}).expression == "s.acc > 1"
    # The existing positional form still works for older callers.
    assert Gate("s.acc", ">=", 0.5).expression == "s.acc >= 0.5"


@pytest.mark.parametrize("spec, match", [
    ("s.acc => 1", "cannot parse"),
    ("s.acc == 1 @ 95%", "confidence bound needs"),
    ("s.acc < 1 @ 120%", r"confidence must be in"),
    ({"metric": "s.acc", "max_regression": 0.1, "op": "<"}, "not op/value"),
    ({"metric": "s.acc", "max_regression": "lots"}, "max_regression must be"),
    ({"metric": "s.acc", "op": "<"}, "needs 'value'"),
    ({"metric": "s.acc", "op": "<", "value": 1, "tolerance": 2}, "unknown gate field"),
    ({"metric": "s.acc", "max_regression": -1}, ">= 0"),
])
def test_parse_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_gate(spec)


# ---- threshold and NaN/missing --------------------------------------------------------------------
def test_nan_and_missing_fail_with_reason():
    assert not evaluate_gate(parse_gate("s.acc > 0"), {}).passed
    assert "missing" in evaluate_gate(parse_gate("s.acc > 0"), {}).reason
    r = evaluate_gate(parse_gate("s.acc > 0"), {"s.acc": math.nan})
    assert not r.passed and "NaN" in r.reason
    reg = evaluate_gate(parse_gate("s.acc regression <= 0.1"), {"s.acc": math.nan}, result=_result(), baseline={"s.acc": 1})
    assert not reg.passed and "NaN" in reg.reason


def test_threshold_gate():
    res = apply_gates(_result(), [parse_gate("s.acc >= 0.7"), parse_gate("s.acc >= 0.8")])
    assert [g.passed for g in res.gates] == [True, False] and not res.passed
    assert "is false" in res.gates[1].reason


# ---- confidence bounds ----------------------------------------------------------------------------
def test_confidence_gate_does_not_pass_by_luck_on_a_small_sample():
    gate = parse_gate("s.tox <= 0.02 @ 95%")
    small = apply_gates(_result(rate=[0.0] * 20), [gate]).gates[0]
    assert small.value == 0.0 and not small.passed          # the point value passes; the bound does not
    assert small.bound == pytest.approx(0.1192, abs=1e-3)  # one-sided Wilson, 0 of 20
    big = apply_gates(_result(rate=[0.0] * 400), [gate]).gates[0]
    assert big.passed and big.bound < 0.02
    assert apply_gates(_result(rate=[0.0] * 20), [parse_gate("s.tox <= 0.02")]).gates[0].passed


def test_confidence_gate_uses_the_right_side_and_is_seeded():
    vals = [0.5, 0.9, 0.7, 0.8, 0.6, 0.75, 0.65, 0.85]
    lo = apply_gates(_result(vals), [parse_gate("s.acc >= 0.7 @ 90%")]).gates[0]
    hi = apply_gates(_result(vals), [parse_gate("s.acc <= 0.75 @ 90%")]).gates[0]
    assert lo.bound < 0.71875 < hi.bound
    assert not lo.passed and not hi.passed       # mean 0.72 passes both, the bounds do not
    again = apply_gates(_result(vals), [parse_gate("s.acc >= 0.7 @ 90%")]).gates[0]
    assert again.bound == lo.bound
    irregular = [0.513, 0.931, 0.722, 0.817, 0.644, 0.771, 0.668, 0.889]
    b0 = apply_gates(_result(irregular, seed=0), [parse_gate("s.acc >= 0.7 @ 90%")]).gates[0].bound
    b5 = apply_gates(_result(irregular, seed=5), [parse_gate("s.acc >= 0.7 @ 90%")]).gates[0].bound
    assert b0 != b5 and abs(b0 - b5) < 0.02     # another seed: other draws, nearly the same bound


def test_confidence_on_corpus_metric_fails_with_reason():
    g = apply_gates(_result(), [parse_gate("s.ppl < 100 @ 95%")]).gates[0]
    assert not g.passed and "corpus-level" in g.reason


# ---- regressions ----------------------------------------------------------------------------------
def _base(**metrics):
    return AuditResult(suite={"name": "x", "version": "1"}, model={}, generation={"max_new_tokens": 8}, seed=0,
                       metrics={f"s.{k}": v for k, v in metrics.items()})


def test_regression_higher_is_better():
    cur = _result([0.7, 0.7, 0.7, 0.7])              # acc = 0.7
    gate = parse_gate("s.acc regression <= 0.05")
    assert apply_gates(cur, [gate], baseline=_base(acc=0.74)).gates[0].passed      # worse by 0.04
    fail = apply_gates(cur, [gate], baseline=_base(acc=0.76)).gates[0]             # worse by 0.06
    assert not fail.passed and fail.op == ">=" and fail.threshold == pytest.approx(0.71) and fail.baseline == 0.76
    assert "worse by 0.06" in fail.reason
    assert apply_gates(cur, [gate], baseline=_base(acc=0.2)).gates[0].passed        # improved


def test_regression_lower_is_better_and_relative():
    cur = _result()                                    # ppl = 50, lower is better
    gate = parse_gate("s.ppl regression <= 10%")
    assert apply_gates(cur, [gate], baseline=_base(ppl=46.0)).gates[0].passed       # +8.7%
    fail = apply_gates(cur, [gate], baseline=_base(ppl=45.0)).gates[0]              # +11.1%
    assert not fail.passed and fail.op == "<=" and fail.threshold == pytest.approx(49.5)
    assert apply_gates(cur, [gate], baseline=_base(ppl=80.0)).gates[0].passed       # got better


def test_regression_with_confidence_compares_the_pessimistic_bound():
    cur = _result([0.5, 0.9, 0.7, 0.8, 0.6, 0.75, 0.65, 0.85])  # mean 0.71875
    point = apply_gates(cur, [parse_gate("s.acc regression <= 0.01")], baseline=_base(acc=0.725)).gates[0]
    bound = apply_gates(cur, [parse_gate("s.acc regression <= 0.01 @ 90%")], baseline=_base(acc=0.725)).gates[0]
    assert point.passed and not bound.passed and bound.bound < 0.715


def test_regression_without_baseline_or_direction_fails():
    cur = _result()
    assert "no baseline" in apply_gates(cur, [parse_gate("s.acc regression <= 0.1")]).gates[0].reason
    assert "missing" in apply_gates(cur, [parse_gate("s.acc regression <= 0.1")], baseline=_base(ppl=1.0)).gates[0].reason
    cur.sections["s"].metric_info.pop("acc")
    assert "no direction" in apply_gates(cur, [parse_gate("s.acc regression <= 0.1")], baseline=_base(acc=1.0)).gates[0].reason


def test_recorded_baseline_is_used_when_none_given():
    cur = _result([0.7] * 4)
    cur.baseline = {"metrics": {"s.acc": 0.9}}
    assert not apply_gates(cur, [parse_gate("s.acc regression <= 0.05")]).gates[0].passed


# ---- baselines --------------------------------------------------------------------------------------
def test_incompatible_baselines_are_refused_unless_forced():
    a, b = _result(), _result()
    assert incompatibilities(identity(a), identity(b)) == []
    b.generation = {"max_new_tokens": 16}
    with pytest.raises(BaselineError, match="generation.max_new_tokens is 8 in the baseline but 16 now; use --force"):
        check_baseline(a, identity(b), path="base.json")
    assert "max_new_tokens" in check_baseline(a, identity(b), force=True)
    b = _result(seed=3)
    assert incompatibilities(identity(a), identity(b)) == ["seed is 0 in the baseline but 3 now"]
    b = _result()
    b.suite["version"] = "2"
    assert "suite version" in incompatibilities(identity(a), identity(b))[0]
    a.data, b.data = {"records": 10, "fingerprint": "aaa"}, {"records": 10, "fingerprint": "bbb"}
    b.suite["version"] = "1"
    assert incompatibilities(identity(a), identity(b)) == ["the prompt set (data fingerprint) is 'aaa' in the baseline but 'bbb' now"]
    # batch_size does not change what is generated.
    a.data = b.data
    a.generation, b.generation = {"max_new_tokens": 8, "batch_size": 1}, {"max_new_tokens": 8, "batch_size": 64}
    assert incompatibilities(identity(a), identity(b)) == []


def test_suite_confidence_block_and_gate_validation(tmp_path):
    raw = {"name": "t", "data": "d.jsonl", "sections": {"diversity": {}}, "confidence": {"level": 0.9, "resamples": 500},
           "gates": ["diversity.rep_2 <= 0.5 @ 99%", "diversity.self_bleu regression <= 5%"]}
    suite = parse_suite(raw, path=str(tmp_path / "s.yaml"))
    assert suite.confidence.level == 0.9 and suite.gates[0].confidence == 0.99 and suite.gates[1].kind == "regression"
    # Changing the interval settings does not make an old baseline incompatible.
    raw2 = dict(raw, confidence={"level": 0.8})
    assert parse_suite(raw2, path=str(tmp_path / "s.yaml")).fingerprint() == suite.fingerprint()
    with pytest.raises(ConfigError, match="confidence: unknown field 'levl'"):
        parse_suite(dict(raw, confidence={"levl": 0.9}), path="s.yaml")
    with pytest.raises(ConfigError, match="gates\\[0\\]: unknown metric 'diversity.nope'"):
        parse_suite(dict(raw, gates=["diversity.nope regression <= 1"]), path="s.yaml")


def test_regression_against_a_nan_or_infinite_baseline_fails_with_the_reason(tmp_path):
    """NaN in any float type (numpy's too), inf, or junk in the baseline: fail saying so, never 'not worse'."""
    import numpy as np

    cur = _result([0.7] * 4)
    gate = parse_gate("s.acc regression <= 10%")
    for bad in (math.nan, np.float32("nan"), np.float64("nan"), math.inf, -math.inf, "oops"):
        g = apply_gates(cur, [gate], baseline=_base(acc=bad)).gates[0]
        assert not g.passed and "not a finite number in the baseline" in g.reason, (bad, g.reason)
    # The same through a saved baseline file (JSON stores NaN as null).
    _base(acc=math.nan).save(tmp_path)
    g = apply_gates(cur, [gate], baseline=AuditResult.load(tmp_path / "results.json")).gates[0]
    assert not g.passed and "in the baseline" in g.reason
    assert apply_gates(cur, [gate], baseline=_base(acc=np.float32(0.72))).gates[0].passed
