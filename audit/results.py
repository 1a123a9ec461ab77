"""Results as plain data: per-sample records, section results and the whole audit.

Results know nothing of rendering: renderers (console, JSON, HTML, JUnit, Markdown) read them.
Everything here round-trips through JSON (``AuditResult.from_json(r.to_json()) == r``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuditError
from .io.input_files import check_regular_file
from .io.untrusted import one_line

SCHEMA_VERSION = 1


class ResultsFormatError(ValueError):
    """A results file of the right schema version holds a field of the wrong shape; the message names it."""


@dataclass
class MetricInfo:
    """What a metric is: declared once, on the metric; gates and reports read it."""

    name: str
    # True / False: the better direction, which gates and reports read. None: a diagnostic with no
    # better direction (a p-value, a count, queries per example): reported, never an arrow or goal.
    higher_is_better: bool | None
    description: str = ""
    # True when the metric is a mean or rate over samples (bootstrap CIs apply); False for
    # corpus-level metrics such as self-BLEU or distinct-n.
    per_sample: bool = True


@dataclass
class SampleRecord:
    """One prompt of the main dataset with its generations and per-sample scores."""

    id: str
    prompt: str
    reference: str | None = None
    generations: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # "section.score" -> value for this sample (e.g. "quality.chrf"); plain numbers.
    scores: dict[str, float] = field(default_factory=dict)
    # Role/content turns when the record was given as a conversation (``prompt`` is its last user turn).
    messages: list[dict[str, str]] | None = None

    @property
    def model_input(self):
        """What the model adapter renders: the turns when there are any, else the prompt."""
        return self.messages if self.messages else self.prompt

    def with_user_text(self, text: str):
        """The model input with the final user turn's words replaced (history kept), for perturbations."""
        if not self.messages:
            return text
        return [dict(m) for m in self.messages[:-1]] + [{"role": "user", "content": text}]


@dataclass
class SectionResult:
    """What one suite section produced."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    metric_info: dict[str, MetricInfo] = field(default_factory=dict)
    # Per-sample values behind each per-sample metric, for bootstrap intervals in reports.
    sample_values: dict[str, list[float]] = field(default_factory=dict)
    # Section-specific plain data for renderers: group tables, attack examples, heatmaps, ...
    details: dict[str, Any] = field(default_factory=dict)
    # Section-specific records (e.g. toxicity prompts, bias continuations, attack results).
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "SectionResult":
        d = dict(d)
        d["metric_info"] = {k: MetricInfo(**v) for k, v in d.get("metric_info", {}).items()}
        return cls(**d)


@dataclass
class GateResult:
    """The outcome of one gate."""

    expression: str
    metric: str
    op: str
    threshold: float | None
    value: float | None
    passed: bool
    reason: str
    # Optional extras used by confidence and baseline gates.
    baseline: float | None = None
    bound: float | None = None
    confidence: float | None = None


@dataclass
class AuditResult:
    """One audit run: identity, settings, flat metrics, sections, gates and the verdict."""

    suite: dict[str, Any]
    model: dict[str, Any]
    generation: dict[str, Any]
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    sections: dict[str, SectionResult] = field(default_factory=dict)
    samples: list[SampleRecord] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    passed: bool = True
    # "section.metric" -> confidence interval {low, high, level, method, n, resamples} (audit.stats);
    # metrics without one (corpus-level) carry {"low": None, "high": None, "why": ...}.
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The baseline this run was gated against (audit.baseline.summarize): path, identity, metrics.
    baseline: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    # ---- lookups -----------------------------------------------------------------------
    def metric_info(self, key: str) -> MetricInfo | None:
        """Info for a flat ``section.metric`` key, if the section declared it."""
        section, _, name = key.partition(".")
        sec = self.sections.get(section)
        return sec.metric_info.get(name) if sec else None

    @property
    def errors(self) -> dict[str, str]:
        return {n: s.error for n, s in self.sections.items() if s.error}

    # ---- serialisation -----------------------------------------------------------------
    def to_dict(self, *, include_samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not include_samples:
            d.pop("samples")
        return json_safe(d)

    def to_json(self, *, include_samples: bool = True, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(include_samples=include_samples), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> "AuditResult":
        """Raises: ValueError for another schema version, :class:`ResultsFormatError` naming a field of the wrong shape."""
        if not isinstance(d, dict):
            raise ResultsFormatError(f"expected a JSON object (an audit result), got {_got(d)}")
        d = dict(d)
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"results schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
        check_shape(d, cls)   # every field's shape, before the renderers meet a list where a mapping belongs
        d["sections"] = {k: SectionResult.from_dict(v) for k, v in d.get("sections", {}).items()}
        d["samples"] = [SampleRecord(**s) for s in d.get("samples", [])]
        d["gates"] = [GateResult(**g) for g in d.get("gates", [])]
        d["metrics"] = {k: (math.nan if v is None else v) for k, v in d.get("metrics", {}).items()}
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "AuditResult":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AuditResult":
        """Read a ``results.json``; a ``samples.jsonl`` beside it fills in the samples."""
        path = Path(path)
        result = cls.from_json(path.read_text(encoding="utf-8"))
        side = path.with_name("samples.jsonl")
        if not result.samples and side.exists():
            with side.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        record = json.loads(line)
                        try:
                            check_shape(record, SampleRecord)
                        except ResultsFormatError as e:
                            raise ResultsFormatError(f"{side.name} line {n}: {e}") from None
                        result.samples.append(SampleRecord(**record))
        return result

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``results.json`` (samples apart, in ``samples.jsonl``) atomically; return its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(json_safe(asdict(s)), ensure_ascii=False) + "\n" for s in self.samples)
        atomic_write(out / "samples.jsonl", lines)
        atomic_write(out / "results.json", self.to_json(include_samples=False) + "\n")
        return out / "results.json"

    def to_frame(self):
        """Per-sample table (one row per generation) as a pandas DataFrame."""
        import pandas as pd

        rows = []
        for s in self.samples:
            for k, g in enumerate(s.generations or [None]):
                rows.append({"id": s.id, "sample": k, "prompt": s.prompt, "reference": s.reference,
                             "generation": g, **s.scores, **{f"meta.{m}": v for m, v in s.metadata.items()}})
        return pd.DataFrame(rows)

    def metrics_frame(self):
        """The flat metrics as a DataFrame with direction and section columns."""
        import pandas as pd

        rows = []
        for key, value in self.metrics.items():
            info = self.metric_info(key)
            rows.append({"metric": key, "value": value, "section": key.partition(".")[0],
                         "higher_is_better": info.higher_is_better if info else None})
        return pd.DataFrame(rows)


def read_results(path: str | os.PathLike, *, label: str = "", error: type[Exception] | None = None) -> AuditResult:
    """``AuditResult.load`` with a one-line error (``error``, default AuditError: exit 2) when the file is missing or not ours."""
    error = error or AuditError
    p = Path(path)
    prefix = f"{label} {p}" if label else str(p)
    if not p.exists():
        raise error(f"{prefix}: {'file' if label else 'results file'} not found")
    check_regular_file(p, what="results file", error=error)   # not a FIFO, a device or a directory
    try:
        return AuditResult.load(p)
    except ResultsFormatError as e:
        raise error(f"{prefix}: {one_line(e, limit=300)}") from None
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise error(f"{prefix}: not a readable audit results file ({type(e).__name__}: {one_line(e, limit=200)})") from None


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {one_line(value, limit=40)!r}"
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _kind(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    tp = typing.get_origin(tp) or tp
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number (or null)",
            bool: "true or false", type(None): "null"}.get(tp, str(tp))


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)   # once per dataclass, not once per sample


def check_shape(value: Any, tp: Any, where: str = "") -> None:
    """Check plain JSON data against a type of this module (its dataclasses' fields, recursively).

    A float field also takes an int and null (NaN is written as null); ``Any`` takes anything.

    Raises:
        ResultsFormatError: ``field sections.quality.metrics: expected a mapping, got a list``.

    Example:
        >>> check_shape({"name": "acc"}, MetricInfo)
        Traceback (most recent call last):
        ...
        audit.results.ResultsFormatError: field higher_is_better: missing
    """
    if _validator(tp)(value):
        return   # the fast path; the walk below only runs to name what is wrong
    _explain(value, tp, where)
    raise ResultsFormatError(f"field {where}: not {_kind(tp)}" if where else f"not {_kind(tp)}")   # (never reached)


@functools.lru_cache(maxsize=None)
def _validator(tp: Any):
    """A predicate ``value -> bool`` for ``tp``, built once per type (loading 20k samples stays fast)."""
    if tp is Any:
        return lambda v: True
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(tp)
        checks = [_validator(a) for a in options if a is not type(None)]
        none_ok = type(None) in options
        return lambda v: (v is None and none_ok) or any(c(v) for c in checks)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = [(f.name, _validator(hints[f.name]),
                   f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                  for f in dataclasses.fields(tp)]
        names = set(hints)

        def check_fields(v):
            if not isinstance(v, dict) or not names.issuperset(v):
                return False
            return all(c(v[n]) if n in v else not required for n, c, required in fields)
        return check_fields
    args = typing.get_args(tp)
    if (origin or tp) is dict:
        inner = _validator(args[1]) if args else None
        return lambda v: isinstance(v, dict) and (inner is None or all(inner(x) for x in v.values()))
    if (origin or tp) is list:
        inner = _validator(args[0]) if args else None
        return lambda v: isinstance(v, list) and (inner is None or all(inner(x) for x in v))
    if tp is float:
        return lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    if tp is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    return lambda v: isinstance(v, tp)


def _explain(value: Any, tp: Any, where: str) -> None:
    """Walk ``value`` against ``tp`` with the path, raising for the first field of the wrong shape."""
    def fail(msg: str):
        raise ResultsFormatError(f"field {where}: {msg}" if where else msg)

    if tp is Any:
        return
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return
        kinds = [a for a in options if a is not type(None)]
        if len(kinds) == 1:
            return _explain(value, kinds[0], where)
        for a in kinds:
            try:
                return _explain(value, a, where)
            except ResultsFormatError:
                pass
        fail(f"expected {' or '.join(_kind(a) for a in options)}, got {_got(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {_got(value)}")
        hints = _hints(tp)
        at = f"{where}." if where else ""
        for key in value:
            if key not in hints:
                raise ResultsFormatError(f"field {at}{key}: not a field of {tp.__name__} (expected one of "
                                         f"{', '.join(hints)})")
        for f in dataclasses.fields(tp):
            if f.name in value:
                _explain(value[f.name], hints[f.name], f"{at}{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultsFormatError(f"field {at}{f.name}: missing")
        return
    args = typing.get_args(tp)
    if (origin or tp) is dict:
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {_got(value)}")
        for k, v in value.items() if args else ():
            _explain(v, args[1], f"{where}.{k}" if where else str(k))
    elif (origin or tp) is list:
        if not isinstance(value, list):
            fail(f"expected a list, got {_got(value)}")
        for i, v in enumerate(value) if args else ():
            _explain(v, args[0], f"{where}[{i}]")
    elif tp is float:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            fail(f"expected a number (or null), got {_got(value)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"expected an integer, got {_got(value)}")
    elif tp in (bool, str) and not isinstance(value, tp):
        fail(f"expected {_kind(tp)}, got {_got(value)}")


def json_safe(obj):
    """A JSON-safe copy of plain data: NaN/inf become None (JSON has no NaN), numpy scalars become
    numbers, tuples lists, keys strings and anything else its ``str``.

    What every writer of our JSON (results, samples, reports' script data, comparisons) passes
    its data through, so ``json.dumps(..., allow_nan=False)`` never fails.

    Example:
        >>> json_safe({"a": float("nan"), 1: (2, float("inf"))})
        {'a': None, '1': [2, None]}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int) and not hasattr(obj, "dtype"):
        return obj
    try:
        f = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if hasattr(obj, "dtype") and getattr(obj.dtype, "kind", "f") in "iu":
        return int(obj)
    return f if math.isfinite(f) else None


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` via a temp file and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; reports are ordinary files
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
