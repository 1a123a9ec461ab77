"""Model, data and generation configuration: typed dataclasses, validated before any model loads.

:func:`from_mapping` builds any config dataclass from a plain mapping (as YAML gives) with errors
that name the file and the field; unknown names suggest the closest valid one. The whole suite
(sections, gates) is assembled above this module and the evaluators, in :mod:`audit.suite`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuditError
from .registry import did_you_mean
from .io.untrusted import excerpt, one_line

# Devices torch can be asked for by name (checked before any model loads; availability is checked at load).
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
# Longest validation reason quoted in an error: messages may quote a value, and values are untrusted.
MAX_REASON = 300


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
        raise ConfigError(f"{where}: {one_line(e, limit=MAX_REASON)}") from None


def non_finite_field(obj: Any, prefix: str = "") -> tuple[str, float] | None:
    """``(dotted path, value)`` of the first NaN or infinite number anywhere in ``obj`` (plain data), or None.

    Example:
        >>> non_finite_field({"sections": {"bias": {"generation": {"temperature": float("nan")}}}})
        ('sections.bias.generation.temperature', nan)
    """
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (prefix, obj)
    if isinstance(obj, dict):
        items = ((f"{prefix}.{k}" if prefix else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{prefix}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, value in items:
        found = non_finite_field(value, path)
        if found is not None:
            return found
    return None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


MAX_NEW_TOKENS = 1 << 20   # above any context window; the model's own window is checked before loading weights


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
        if self.max_new_tokens > MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be <= {MAX_NEW_TOKENS:,} (no model has a longer context), got {self.max_new_tokens}")
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

    def cut_at_stop(self, text: str) -> str:
        """``text`` cut at the first occurrence of any :attr:`stop` string (the whole text when none occurs).

        Example:
            >>> GenerationSettings(stop=["\\n", "User:"]).cut_at_stop("Fine.\\nUser: more")
            'Fine.'
        """
        cut = len(text)
        for s in self.stop:
            j = text.find(s)
            if j != -1:
                cut = min(cut, j)
        return text[:cut]

    def key(self) -> dict:
        """The settings that change what is generated: what generation caches and baselines must match."""
        return self.key_of(dataclasses.asdict(self))

    @staticmethod
    def key_of(settings: dict[str, Any]) -> dict[str, Any]:
        """:meth:`key` of settings given as a plain mapping (e.g. a results.json's ``generation``).

        The one place that says which fields do not change outputs: ``batch_size`` (greedy decoding
        is per row and sampling is seeded per prompt, so batching changes only the speed).

        Example:
            >>> GenerationSettings.key_of({"max_new_tokens": 8, "batch_size": 64})
            {'max_new_tokens': 8}
        """
        return {k: v for k, v in settings.items() if k != "batch_size"}


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
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N, mps or xpu[:N], got {excerpt(self.device)}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if not self.chat_template:
            raise ValueError("chat_template must be auto, none or the path of a Jinja template file")


@dataclass
class DataSpec:
    """The suite's main prompt set: a file, a saved or cached Hugging Face dataset, and how to read it."""

    # JSONL/JSON/CSV/TSV, Parquet or Arrow file, or a `save_to_disk` directory (relative to the suite file),
    # or hf:NAME: a dataset already in the local `datasets` cache (read offline, never downloaded)
    path: str = ""
    split: str | None = None         # a DatasetDict's split (default: the only one); one table or file: keep rows whose `split` field equals this
    limit: int | None = None         # keep the first N records (after the split)
    config: str | None = None        # hf:NAME only: the configuration to read when several are cached
    prompt_column: str = "prompt"        # the user's words
    reference_column: str = "reference"  # optional reference answer
    messages_column: str = "messages"    # optional chat turns: a list of {role, content} ending with a user turn

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.config is not None and not self.path.startswith("hf:"):
            raise ValueError("config is only for a cached dataset (path: hf:NAME)")


def bundled_dir() -> Path:
    """Directory of the suites and data that ship inside the package."""
    return Path(__file__).parent / "suites"


def resolve_data_path(p: str, base: Path) -> Path:
    if p.startswith("audit:"):
        return bundled_dir() / p[len("audit:"):]
    path = Path(os.path.expanduser(p))
    return path if path.is_absolute() else base / path
