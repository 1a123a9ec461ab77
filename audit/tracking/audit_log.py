"""What an audit puts in MLflow: identity and settings as params, results.json's flat metrics, the gates.

One audit is one MLflow run:

- params: ``suite.*`` (name, path, version, fingerprint, sections), ``model.*`` (results.json's model
  identity: path, fingerprint, dtype, architecture, ...), ``generation.*``, ``data.*`` and ``seed``;
- metrics (step 0): every flat metric of results.json with a finite value, under its name sanitised
  to MLflow's characters (tag ``audit.renamed_metrics`` maps the changed ones), NaN/None skipped and
  listed in tag ``audit.skipped_metrics``; ``gate.<metric>`` 1/0 per gate (``gate.<metric>_2`` for a
  second gate on one metric; tag ``gate.<metric>`` holds its expression) and ``gates.passed`` 1/0;
- tags: ``audit.passed``, ``audit.suite``, ``audit.model``, ``audit.out_dir``, the suite's own tags;
- artifacts: every file the run wrote (results.json, samples.jsonl, report.html, junit.xml, ...).

A harden run logs both audits into one run (``before.<metric>``, ``after.<metric>``) beside the
training curves (:mod:`audit.tracking.training`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .store import MlflowRun, finite, metric_names


def _flat(prefix: str, d: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flat(key, v))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str) if any(isinstance(x, (list, dict)) for x in v) else ",".join(map(str, v))
        else:
            out[key] = "" if v is None else str(v)
    return out


def audit_params(result) -> dict[str, str]:
    """The run's params: what was audited, how (model identity, generation settings, data, seed)."""
    params = _flat("suite", result.suite)
    params.update(_flat("model", result.model))
    params.update(_flat("generation", result.generation))
    params.update(_flat("data", result.data))
    params["seed"] = str(result.seed)
    if result.versions.get("audit"):
        params["audit.version"] = result.versions["audit"]
    return params


def audit_metrics(result, prefix: str = "") -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(MLflow name -> value, original -> MLflow name for the renamed ones, skipped names) of the flat metrics."""
    names = metric_names(f"{prefix}{k}" for k in result.metrics)
    logged, renamed, skipped = {}, {}, []
    for k, v in result.metrics.items():
        original = f"{prefix}{k}"
        if not finite(v):
            skipped.append(original)
            continue
        logged[names[original]] = float(v)
        if names[original] != original:
            renamed[original] = names[original]
    return logged, renamed, skipped


def gate_metrics(result, prefix: str = "") -> tuple[dict[str, float], dict[str, str]]:
    """(``gate.<metric>`` -> 1/0 and ``gates.passed`` -> 1/0, ``gate.<metric>`` -> expression and reason)."""
    names = metric_names(dict.fromkeys([f"{prefix}gate.{g.metric}" for g in result.gates] + [f"{prefix}gates.passed"]))
    # metric_names keys by name: a second gate on the same metric is numbered here.
    keys, used = [], set()
    for g in result.gates:
        base = names[f"{prefix}gate.{g.metric}"]
        key, n = base, 2
        while key in used:
            key, n = f"{base}_{n}", n + 1
        used.add(key)
        keys.append(key)
    metrics = {k: float(bool(g.passed)) for k, g in zip(keys, result.gates)}
    metrics[names[f"{prefix}gates.passed"]] = float(bool(result.passed))
    tags = {k: f"{g.expression}: {'PASS' if g.passed else 'FAIL'} ({g.reason})" if g.reason else g.expression
            for k, g in zip(keys, result.gates)}
    return metrics, tags


def _name_tags(renamed: dict[str, str], skipped: list[str], prefix: str = "audit.") -> dict[str, str]:
    tags = {}
    if skipped:
        tags[f"{prefix}skipped_metrics"] = ",".join(sorted(skipped))
    if renamed:
        tags[f"{prefix}renamed_metrics"] = json.dumps(renamed, sort_keys=True)
    return tags


def log_audit(run: MlflowRun, result, *, artifacts: Iterable[Path] = (), out_dir: Path | None = None) -> None:
    """Log one audit (params, flat metrics, gates, artifacts) into ``run``; the caller ends the run."""
    run.log_params(audit_params(result))
    metrics, renamed, skipped = audit_metrics(result)
    gates, gate_tags = gate_metrics(result)
    run.log_metrics({**metrics, **gates})
    run.set_tags({"audit.passed": str(bool(result.passed)).lower(), "audit.suite": result.suite.get("name", ""),
                  "audit.model": result.model.get("path", ""), **({"audit.out_dir": str(out_dir)} if out_dir else {}),
                  **{f"audit.errors.{k}": v for k, v in result.errors.items()},
                  **gate_tags, **_name_tags(renamed, skipped)})
    run.log_artifacts(artifacts)


def log_harden(run: MlflowRun, before, after, *, artifacts: Iterable[Path] = (), summary: dict[str, Any] | None = None) -> None:
    """Log a harden loop's before/after audits into ``run`` (which already holds the training curves)."""
    run.log_params({f"before.{k}": v for k, v in audit_params(before).items() if k.startswith(("suite.", "model.", "seed"))})
    run.log_params({f"after.{k}": v for k, v in _flat("model", after.model).items()})
    b, rb, sb = audit_metrics(before, "before.")
    a, ra, sa = audit_metrics(after, "after.")
    gb, tb = gate_metrics(before, "before.")
    ga, ta = gate_metrics(after, "after.")
    extra = {}
    for k, v in (summary or {}).items():
        if finite(v) and not isinstance(v, bool):
            extra[f"harden.{k}"] = float(v)
    run.log_metrics({**b, **a, **gb, **ga, **extra})
    run.set_tags({"audit.passed_before": str(bool(before.passed)).lower(), "audit.passed": str(bool(after.passed)).lower(),
                  "audit.suite": before.suite.get("name", ""), "audit.model": before.model.get("path", ""),
                  **tb, **ta, **_name_tags({**rb, **ra}, sb + sa)})
    run.log_artifacts(artifacts)
