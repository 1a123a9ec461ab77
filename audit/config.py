"""Suite, model, data and generation configuration: typed dataclasses, validated before any model loads.

A suite file is YAML, read with a ``yaml.SafeLoader`` only (no code in YAML; alias bombs refused, see safe_yaml). Every error names the
file and the field; unknown names suggest the closest valid one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import AuditError
from .input_files import read_text
from .registry import did_you_mean
from .safe_yaml import load_yaml
from .untrusted import excerpt, one_line

# Longest validation reason quoted in an error: messages may quote a value, and values are untrusted.
_MAX_REASON = 300


class ConfigError(AuditError):
    """A suite or config file is invalid; the message names the file and field."""


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or str(origin) in ("types.UnionType", "<class 'types.UnionType'>"):  # `X | None` annotations
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def from_mapping(cls, mapping: Any, where: str):
    """Build dataclass ``cls`` from a mapping, with field-named errors.

    ``where`` prefixes every message (e.g. ``"suite.yaml: sections.quality"``). Unknown keys
    suggest the closest field; values are type-checked against the annotations; the class's own
    ``__post_init__`` may raise ``ValueError`` which is re-raised naming ``where``.

    Example:
        >>> from_mapping(GenerationSettings, {"max_new_tokens": 8}, "x").max_new_tokens
        8
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in mapping.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown field {excerpt(key)}{did_you_mean(str(key), fields)}; valid: {', '.join(sorted(fields))}")
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"{where}.{key}: expected {_type_name(hints[key])}, got {excerpt(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            # NaN passes every `x <= 0` check in __post_init__; inf is never a meaningful setting here.
            raise ConfigError(f"{where}.{key}: must be a finite number, got {value}")
    try:
        return cls(**mapping)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {one_line(e, limit=_MAX_REASON)}") from None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


@dataclass
class GenerationSettings:
    """How prompts are turned into generations (one shared pass for all sections)."""

    max_new_tokens: int = 32         # tokens generated per sample
    do_sample: bool = False          # False: greedy decoding; True: sample with the settings below
    temperature: float = 1.0         # softmax temperature when sampling
    top_p: float = 1.0               # nucleus sampling mass (1.0 = off)
    top_k: int = 0                   # keep the k most likely tokens (0 = off)
    num_samples: int = 1             # generations per prompt (sampling gives different ones)
    batch_size: int = 16             # prompts per forward pass; results do not depend on it
    stop: list[str] = field(default_factory=list)  # cut a generation at the first of these strings

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError("num_samples > 1 needs do_sample: true (greedy gives identical samples)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop must be a list of non-empty strings")

    def key(self) -> dict:
        """The settings that change what is generated (batch_size does not)."""
        d = dataclasses.asdict(self)
        d.pop("batch_size")
        return d


@dataclass
class ModelSpec:
    """Which model to audit and how to load it."""

    path: str = "builtin:tiny"       # builtin:tiny | builtin:smollm2 | builtin:micro | local directory | FILE.gguf | hub id (cached)
    device: str = "auto"             # auto (cuda if available) | cpu | cuda | cuda:N
    dtype: str = "auto"              # auto (bf16 on capable CUDA, else float32) | float32 | bfloat16 | float16
    trust_remote_code: bool = False  # never run a model repo's code unless asked
    revision: str | None = None      # hub revision, for hub ids
    # How prompts reach the model. auto: the tokenizer's chat template when it has one (instruct
    # models are audited the way they are used), else the raw prompt; none: always the raw prompt;
    # PATH: a Jinja chat template file (relative to the suite file). The adapter renders it, so
    # every section gets it and perturbations change only the user's words.
    chat_template: str = "auto"
    system_prompt: str | None = None  # a system turn before every prompt (needs a chat template)

    def __post_init__(self):
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if not self.chat_template:
            raise ValueError("chat_template must be auto, none or the path of a Jinja template file")


@dataclass
class DataSpec:
    """The suite's main prompt set."""

    path: str = ""                   # JSONL or CSV with `prompt`, optional `reference`; relative to the suite file
    split: str | None = None         # keep only records whose `split` field equals this
    limit: int | None = None         # keep the first N records (after the split filter)
    prompt_field: str = "prompt"
    reference_field: str = "reference"

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")


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
    path: str | None = None          # the file it came from
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        """Resolve a data path: absolute, relative to the suite file, or ``audit:`` for bundled data."""
        return resolve_data_path(p, self.base_dir)

    def fingerprint(self) -> str:
        """Hash of everything that changes the numbers (for baselines and caches)."""
        d = {k: v for k, v in self.raw.items() if k not in ("gates", "description", "model", "confidence")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bundled_dir() -> Path:
    """Directory of the suites and data that ship inside the package."""
    return Path(__file__).parent / "suites"


def resolve_data_path(p: str, base: Path) -> Path:
    if p.startswith("audit:"):
        return bundled_dir() / p[len("audit:"):]
    path = Path(os.path.expanduser(p))
    return path if path.is_absolute() else base / path


TOP_LEVEL = {"name", "description", "version", "model", "seed", "data", "generation", "sections", "gates", "confidence"}


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
    text = read_text(p, what="suite file", error=ConfigError)   # regular, bounded, UTF-8
    try:
        raw = load_yaml(text)   # safe tags only; alias bombs and runaway nesting refused
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} malformed YAML: {getattr(e, 'problem', None) or e}") from None
    return parse_suite(raw, path=str(p), model_override=model_override)


def parse_suite(raw: Any, *, path: str | None = None, model_override: str | None = None) -> SuiteConfig:
    """Validate a suite mapping (as loaded from YAML) into a :class:`SuiteConfig`."""
    from . import gates as gates_mod
    from .evaluators import SECTIONS

    where = path or "<suite>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a suite must be a YAML mapping")
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{where}: unknown field {excerpt(key)}{did_you_mean(str(key), TOP_LEVEL)}; valid: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("name", "description", "version"):
        if isinstance(raw.get(key), (list, dict)):
            raise ConfigError(f"{where}: {key}: expected a string, got {excerpt(raw[key])}")
    name = raw.get("name") or (Path(path).stem if path else "suite")
    model_raw = raw.get("model", {})
    if isinstance(model_raw, str):
        model_raw = {"path": model_raw}
    model = from_mapping(ModelSpec, model_raw, f"{where}: model")
    if model_override:
        model = dataclasses.replace(model, path=model_override)
    if model.chat_template not in ("auto", "none"):  # a template file: relative to the suite, checked now
        tpath = resolve_data_path(model.chat_template, Path(path).parent if path else Path.cwd())
        if not tpath.is_file():
            raise ConfigError(f"{where}: model.chat_template: template file {tpath} not found (or use auto | none)")
        model = dataclasses.replace(model, chat_template=str(tpath))
    data_raw = raw.get("data", {})
    if isinstance(data_raw, str):
        data_raw = {"path": data_raw}
    data = from_mapping(DataSpec, data_raw, f"{where}: data")
    if not data.path:
        raise ConfigError(f"{where}: data.path is required (a JSONL or CSV file of prompts)")
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
            raise ConfigError(f"{where}: gates[{i}]: {one_line(e, limit=_MAX_REASON)}") from None
        section, _, metric = gate.metric.partition(".")
        if section not in sections:
            raise ConfigError(f"{where}: gates[{i}]: metric {gate.metric!r} names section {section!r}, which this suite does not run{did_you_mean(section, sections)}")
        known = SECTIONS.get(section).metric_names(sections[section])
        if known is not None and metric not in known:
            raise ConfigError(f"{where}: gates[{i}]: unknown metric {gate.metric!r}{did_you_mean(metric, known)}; {section} has: {', '.join(sorted(known))}")
        gates.append(gate)
    from .stats import ConfidenceSettings

    confidence = from_mapping(ConfidenceSettings, raw.get("confidence"), f"{where}: confidence")
    return SuiteConfig(name=str(name), model=model, data=data, generation=gen, seed=seed,
                       version=str(raw.get("version", "1")), description=str(raw.get("description", "")),
                       sections=sections, gates=gates, path=path, raw=raw, confidence=confidence)
