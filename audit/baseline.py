"""Baselines: a previous run's ``results.json`` that regression gates compare against.

Only like may be compared with like. A baseline from another suite or suite version, other data
(other prompts, split or limit), other generation settings or another seed measures something
else, so :func:`check_baseline` refuses it with the reason, unless forced (``--force-baseline``).
The model may differ: comparing models is the point.

Example:
    >>> from audit.results import AuditResult
    >>> a = AuditResult(suite={"name": "s", "version": "1"}, model={}, generation={"max_new_tokens": 8}, seed=0)
    >>> b = AuditResult(suite={"name": "s", "version": "1"}, model={}, generation={"max_new_tokens": 16}, seed=0)
    >>> incompatibilities(identity(a), identity(b))
    ['generation.max_new_tokens is 8 in the baseline but 16 now']
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from .config import GenerationSettings
from .errors import AuditError
from .results import AuditResult, read_results

log = logging.getLogger("audit")


class BaselineError(AuditError):
    """The baseline cannot be read or measures something else than this run (exit 2)."""


def data_fingerprint(items: Iterable[Any]) -> str:
    """Hash of the prompt set: ids, prompts and references, in order (records or samples)."""
    h = hashlib.sha256()
    for it in items:
        fields = [str(it.id), it.prompt, it.reference]
        if getattr(it, "messages", None):  # a conversation record: its earlier turns are data too
            fields.append(it.messages)
        h.update(json.dumps(fields, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def identity(result: AuditResult) -> dict[str, Any]:
    """What must match between a run and its baseline (the runner checks it before generating,
    from the result as it stands before anything ran)."""
    data = result.data or {}
    fp = data.get("fingerprint") or (data_fingerprint(result.samples) if result.samples else None)
    return {
        "schema_version": result.schema_version,
        "suite": result.suite.get("name"),
        "suite_version": result.suite.get("version"),
        "suite_fingerprint": result.suite.get("fingerprint"),
        "generation": GenerationSettings.key_of(result.generation or {}),
        "seed": result.seed,
        "data": {"split": data.get("split"), "limit": data.get("limit"), "records": data.get("records"), "fingerprint": fp},
    }


def incompatibilities(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    """Why a baseline with identity ``base`` cannot gate a run with identity ``cur`` (empty: it can)."""
    out: list[str] = []

    def diff(label: str, a: Any, b: Any) -> None:
        if a is not None and b is not None and a != b:
            out.append(f"{label} is {a!r} in the baseline but {b!r} now")

    diff("schema_version", base.get("schema_version"), cur.get("schema_version"))
    diff("suite", base.get("suite"), cur.get("suite"))
    diff("suite version", base.get("suite_version"), cur.get("suite_version"))
    bg, cg = base.get("generation") or {}, cur.get("generation") or {}
    for k in sorted(set(bg) | set(cg)):
        if k in bg and k in cg and bg[k] != cg[k]:
            out.append(f"generation.{k} is {bg[k]!r} in the baseline but {cg[k]!r} now")
    diff("seed", base.get("seed"), cur.get("seed"))
    bd, cd = base.get("data") or {}, cur.get("data") or {}
    for k in ("split", "limit", "records"):
        if bd.get(k) != cd.get(k) and (k != "records" or (bd.get(k) is not None and cd.get(k) is not None)):
            out.append(f"data.{k} is {bd.get(k)!r} in the baseline but {cd.get(k)!r} now")
    if not out:
        diff("the prompt set (data fingerprint)", bd.get("fingerprint"), cd.get("fingerprint"))
    if not out:
        diff("suite fingerprint (section options or data path changed)", base.get("suite_fingerprint"),
             cur.get("suite_fingerprint"))
    return out


def check_prompt_format(baseline: AuditResult, prompt_format: str | None, *, force: bool = False,
                        path: str | os.PathLike = "") -> str | None:
    """Refuse a baseline whose model read prompts through another chat template or system prompt.

    Checked once the model is loaded (the template comes with its tokenizer). A baseline from
    before chat templates were recorded has none and is not refused on this account.
    """
    model = baseline.model or {}
    if "prompt_format" not in model:
        return None
    base, cur = model.get("prompt_format"), prompt_format
    if base == cur:
        return None
    raw = "raw prompts (no chat template)"
    was = raw if base is None else f"chat template {model.get('chat_template')} [{base}]"
    now = raw if cur is None else f"another chat template or system prompt [{cur}]"
    reason = f"the model read {was} in the baseline but {now} now"
    where = f"baseline {path}" if path else "baseline"
    if not force:
        raise BaselineError(f"{where} is incompatible: {reason}; use --force-baseline to compare anyway")
    log.warning("%s is incompatible but forced: %s", where, reason)
    return reason


def load_baseline(path: str | os.PathLike) -> AuditResult:
    """Read a baseline results file (a ``samples.jsonl`` beside it is read too); errors are one line."""
    return read_results(path, label="baseline", error=BaselineError)


def check_baseline(baseline: AuditResult, current: dict[str, Any], *, force: bool = False, path: str | os.PathLike = "") -> str | None:
    """Refuse an incompatible baseline (raise :class:`BaselineError`) unless ``force``.

    Returns the reasons (joined) when forced past them, else None.
    """
    reasons = incompatibilities(identity(baseline), current)
    if not reasons:
        return None
    where = f"baseline {path}" if path else "baseline"
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    if not force:
        raise BaselineError(f"{where} is incompatible: {reasons[0]}{more}; use --force-baseline to compare anyway")
    log.warning("%s is incompatible but forced: %s", where, "; ".join(reasons))
    return "; ".join(reasons)


def prepare_baseline(baseline: AuditResult | str | os.PathLike, current: dict[str, Any], *,
                     force: bool = False) -> tuple[AuditResult, dict[str, Any]]:
    """Load ``baseline`` (a results file or a loaded result) and refuse it, unless ``force``, when it
    measured something else than a run with identity ``current``.

    Returns the baseline and its summary for the run's result (:func:`summarize`).
    """
    path = "" if isinstance(baseline, AuditResult) else str(baseline)
    if not isinstance(baseline, AuditResult):
        baseline = load_baseline(baseline)
    forced = check_baseline(baseline, current, force=force, path=path)
    return baseline, summarize(baseline, path=path, incompatible=forced)


def check_baseline_prompt_format(baseline: AuditResult, summary: dict[str, Any], prompt_format: str | None, *,
                                 force: bool = False) -> None:
    """:func:`check_prompt_format` once the model is loaded; a difference forced past goes into ``summary``."""
    forced = check_prompt_format(baseline, prompt_format, force=force, path=summary["path"])
    if forced:
        summary["incompatible"] = "; ".join(r for r in (summary.get("incompatible"), forced) if r)


def summarize(baseline: AuditResult, *, path: str | os.PathLike = "", incompatible: str | None = None) -> dict[str, Any]:
    """What a gated run records about its baseline (``AuditResult.baseline``): enough to render it."""
    return {
        "path": str(path),
        "label": Path(path).name if path else "baseline",
        "model": baseline.model.get("spec") or baseline.model.get("path"),
        "model_fingerprint": baseline.model.get("fingerprint"),
        "created": baseline.created,
        "suite": baseline.suite.get("name"),
        "passed": baseline.passed,
        "metrics": dict(baseline.metrics),
        "intervals": dict(baseline.intervals),
        "incompatible": incompatible,
    }
