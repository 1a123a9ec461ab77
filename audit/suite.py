"""A suite: model, data, generation, sections and gates, loaded from YAML and validated before any model loads.

A suite file is YAML, read with a ``yaml.SafeLoader`` only (no code in YAML; alias bombs refused,
see :mod:`audit.io.safe_yaml`): it can only name registered sections, metrics and components. Every
error names the file and the field; unknown names suggest the closest valid one. This module sits
above :mod:`audit.config` (the plain settings) and :mod:`audit.evaluators` (which use those
settings), so neither imports the other back.

Example:
    >>> load_suite("demo").name
    'demo'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import gates as gates_mod
from .config import (
    MAX_REASON,
    ConfigError,
    DataSpec,
    GenerationSettings,
    ModelSpec,
    bundled_dir,
    from_mapping,
    non_finite_field,
    resolve_data_path,
)
from .evaluators import SECTIONS
from .io.safe_yaml import load_yaml_file
from .io.untrusted import excerpt, one_line
from .models.served.spec import model_spec_from, override_model
from .preflight import preflight
from .registry import did_you_mean
from .stats import ConfidenceSettings
from .tracking.settings import TrackingSettings


@dataclass
class SuiteConfig:
    """A whole suite: model, data, generation, sections and gates."""

    name: str
    model: ModelSpec
    data: DataSpec
    generation: GenerationSettings
    seed: int = 0
    version: str = "1"
    description: str = ""
    sections: dict[str, Any] = field(default_factory=dict)   # section name -> validated Options
    gates: list[Any] = field(default_factory=list)           # gates.Gate
    confidence: Any = None           # stats.ConfidenceSettings: interval level / resamples (None: defaults)
    tracking: Any = None             # tracking.TrackingSettings: where the run is logged (None: nowhere)
    path: str | None = None          # the file it came from
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        """Resolve a data path: absolute, relative to the suite file, or ``audit:`` for bundled data."""
        return resolve_data_path(p, self.base_dir)

    def with_model(self, model: str | None) -> "SuiteConfig":
        """A copy measuring ``model`` instead (``--model``: a path, builtin, .gguf or served string); the one
        place a model override is applied. A served string keeps the suite's served options."""
        if not model:
            return self
        return dataclasses.replace(self, model=override_model(self.model, model))

    def fingerprint(self) -> str:
        """Hash of everything that changes the numbers (for baselines and caches)."""
        d = {k: v for k, v in self.raw.items() if k not in ("gates", "description", "model", "confidence", "tracking")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


TOP_LEVEL = {"name", "description", "version", "model", "seed", "data", "generation", "sections", "gates", "confidence",
             "tracking"}


def load_suite(path: str | os.PathLike, *, model_override: str | None = None) -> SuiteConfig:
    """Load and validate a suite file without loading any model.

    ``path`` may be a file or the name of a bundled suite (``demo`` -> ``audit/suites/demo.yaml``).
    """
    p = Path(path)
    if not p.is_file() and not p.suffix and (bundled_dir() / f"{path}.yaml").exists():
        p = bundled_dir() / f"{path}.yaml"  # a bundled suite name (a folder of that name does not shadow it)
    if p.is_dir():
        raise ConfigError(f"{path}: is a directory, not a suite file")
    if not p.exists():
        raise ConfigError(f"{path}: suite file not found")
    # A regular, bounded UTF-8 file; safe tags only; alias bombs and runaway nesting refused.
    raw = load_yaml_file(p, what="suite file", error=ConfigError)
    return parse_suite(raw, path=str(p), model_override=model_override)


def parse_suite(raw: Any, *, path: str | None = None, model_override: str | None = None) -> SuiteConfig:
    """Validate a suite mapping (as loaded from YAML) into a :class:`SuiteConfig`."""
    where = path or "<suite>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a suite must be a YAML mapping")
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{where}: unknown field {excerpt(key)}{did_you_mean(str(key), TOP_LEVEL)}; valid: {', '.join(sorted(TOP_LEVEL))}")
    bad = non_finite_field(raw)
    if bad is not None:   # anywhere: section options, scorer options, generation overrides, gates
        raise ConfigError(f"{where}: {bad[0]}: must be a finite number, got {bad[1]}")
    for key in ("name", "description", "version"):
        if isinstance(raw.get(key), (list, dict)):
            raise ConfigError(f"{where}: {key}: expected a string, got {excerpt(raw[key])}")
    name = raw.get("name") or (Path(path).stem if path else "suite")
    model_raw = raw.get("model", {})
    # A served model (openai:URL, or a mapping with `provider:`) gets its own spec; see audit.models.served.
    model = model_spec_from(model_raw, f"{where}: model")
    if model is None:
        if isinstance(model_raw, str):
            model_raw = {"path": model_raw}
        model = from_mapping(ModelSpec, model_raw, f"{where}: model")
    if isinstance(model, ModelSpec) and model.chat_template not in ("auto", "none"):  # a template file: relative to the suite, checked now
        tpath = resolve_data_path(model.chat_template, Path(path).parent if path else Path.cwd())
        if not tpath.is_file():
            raise ConfigError(f"{where}: model.chat_template: template file {tpath} not found (or use auto | none)")
        model = dataclasses.replace(model, chat_template=str(tpath))
    data_raw = raw.get("data", {})
    if isinstance(data_raw, str):
        data_raw = {"path": data_raw}
    if isinstance(data_raw, dict):   # the names before the datasets formats came: still read, as before
        for old_name, new_name in (("prompt_field", "prompt_column"), ("reference_field", "reference_column")):
            if old_name in data_raw:
                if new_name in data_raw:
                    raise ConfigError(f"{where}: data: give {new_name} or its old name {old_name}, not both")
                data_raw = {**{k: v for k, v in data_raw.items() if k != old_name}, new_name: data_raw[old_name]}
    data = from_mapping(DataSpec, data_raw, f"{where}: data")
    if not data.path:
        raise ConfigError(f"{where}: data.path is required (a JSONL, CSV, Parquet or Arrow file of prompts, a save_to_disk directory, or hf:NAME)")
    gen = from_mapping(GenerationSettings, raw.get("generation", {}), f"{where}: generation")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: seed: expected an integer, got {excerpt(seed)}")

    sections_raw = raw.get("sections")
    if not sections_raw or not isinstance(sections_raw, dict):
        raise ConfigError(f"{where}: sections: expected a mapping of section name -> options; available: {', '.join(SECTIONS.names())}")
    sections: dict[str, Any] = {}
    for sname, opts in sections_raw.items():
        if sname not in SECTIONS:
            raise ConfigError(f"{where}: sections: unknown section {excerpt(sname)}{did_you_mean(str(sname), SECTIONS.names())}; available: {', '.join(SECTIONS.names())}")
        evaluator_cls = SECTIONS.get(sname)
        sections[sname] = from_mapping(evaluator_cls.Options, opts if opts is not None else {}, f"{where}: sections.{sname}")

    gates = []
    for i, g in enumerate(raw.get("gates") or []):
        try:
            gate = gates_mod.parse_gate(g)
        except ValueError as e:
            raise ConfigError(f"{where}: gates[{i}]: {one_line(e, limit=MAX_REASON)}") from None
        section, _, metric = gate.metric.partition(".")
        if section not in sections:
            raise ConfigError(f"{where}: gates[{i}]: metric {gate.metric!r} names section {section!r}, which this suite does not run{did_you_mean(section, sections)}")
        evaluator_cls = SECTIONS.get(section)
        known = evaluator_cls.metric_names(sections[section])
        truncation = {"truncation_rate"} if evaluator_cls.reports_truncation else set()
        if known is not None and metric not in known and metric not in truncation:
            names = sorted(set(known) | truncation)
            raise ConfigError(f"{where}: gates[{i}]: unknown metric {gate.metric!r}{did_you_mean(metric, names)}; {section} has: {', '.join(names)}")
        gates.append(gate)
    confidence = from_mapping(ConfidenceSettings, raw.get("confidence"), f"{where}: confidence")
    tracking = from_mapping(TrackingSettings, raw["tracking"], f"{where}: tracking") if raw.get("tracking") else None
    return SuiteConfig(name=str(name), model=model, data=data, generation=gen, seed=seed,
                       version=str(raw.get("version", "1")), description=str(raw.get("description", "")),
                       sections=sections, gates=gates, path=path, raw=raw, confidence=confidence,
                       tracking=tracking).with_model(model_override)


def validate_suite(path: str | os.PathLike):
    """`audit validate`: load the suite and run every check a run makes before loading weights.

    Returns ``(suite, records)``.
    """
    suite = load_suite(path)
    return suite, preflight(suite)
