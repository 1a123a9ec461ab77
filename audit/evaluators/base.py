"""The evaluator template and the context the runner hands to every section.

Evaluators never load models or write files: they receive a :class:`Context` that owns the model
adapter, the shared (cached) generation pass and the caches, and return a :class:`SectionResult`.
Subclasses declare ``name``, an ``Options`` dataclass, their ``METRICS`` (or :meth:`Evaluator.metric_infos`
when options change them) and fill ``_evaluate``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from ..config import GenerationSettings, resolve_data_path
from ..errors import AuditError
from ..generation import cached_generate, generate_samples, generation_cache
from ..models.interface import Model
from ..io.cache import DiskCache
from ..perturb import ROLE_TAGS
from ..registry import did_you_mean
from ..results import MetricInfo, SampleRecord, SectionResult

log = logging.getLogger("audit")


@dataclass
class Context:
    """What an evaluator may use. Built by the runner; tests build it with :func:`make_context`."""

    model: Model                                 # local weights or a served model (audit.models.interface)
    samples: list[SampleRecord]                  # the main prompt set, generations filled in
    settings: GenerationSettings
    seed: int = 0
    base_dir: Path = field(default_factory=Path.cwd)
    progress: bool = False
    cache_root: Path | None = None
    use_cache: bool = True
    sections: dict[str, SectionResult] = field(default_factory=dict)   # finished sections, in order
    gen_cache: DiskCache | None = None           # the model's generation cache (the runner's; else made on first use)
    # One flag per answer generated through :meth:`generate`: True when it ran to max_new_tokens
    # without stopping (see :func:`hit_cap`); the section template turns a section's into truncation_rate.
    truncated: list[bool] = field(default_factory=list)

    def resolve_path(self, p: str) -> Path:
        """A path from section options: absolute, relative to the suite file, or ``audit:...`` bundled."""
        return resolve_data_path(p, self.base_dir)

    def cache(self, namespace: str) -> DiskCache:
        """A disk cache for this namespace (e.g. scores keyed by backend + text); honours ``--no-cache``."""
        return DiskCache(self.cache_root, f"{namespace}", enabled=self.use_cache)

    def generate(self, prompts: Sequence[Any], settings: GenerationSettings | None = None, *, desc: str = "generate") -> list[list[str]]:
        """Cached generation: a prompt already generated with these settings and seed is not redone.

        A prompt is the user's words (the model renders its chat template around them) or a list
        of role/content turns (``SampleRecord.with_user_text`` builds one from a perturbed prompt).
        """
        settings = settings or self.settings
        out = cached_generate(self.model, prompts, settings, seed=self.seed, cache=self.generation_cache(),
                              progress=self.progress, desc=desc)[0]
        self.truncated.extend(hit_cap(self.model, [g for row in out for g in row], settings.max_new_tokens))
        return out

    def generation_cache(self) -> DiskCache:
        """The model's generation cache, shared by the main pass and every section (honours ``--no-cache``)."""
        if self.gen_cache is None:
            self.gen_cache = generation_cache(self.model, self.cache_root, enabled=self.use_cache)
        return self.gen_cache

    def loglikelihood(self, pairs: Sequence[tuple[Any, str]]) -> list[tuple[float, int]]:
        """log p(continuation | context) per pair; with a chat template the context is a user turn."""
        return self.model.loglikelihood(pairs, batch_size=self.settings.batch_size, progress=self.progress)


#: The truncation warning's default advice (sections where a larger cap is not the fix say so instead).
RAISE_CAP = "raise the section's max_new_tokens"


class Evaluator:
    """Base class for suite sections: public template :meth:`evaluate`, subclass hook ``_evaluate``."""

    name: ClassVar[str] = ""
    METRICS: ClassVar[dict[str, MetricInfo]] = {}
    # True for sections that read the weights (gradients, embeddings): a served model cannot run them.
    needs_weights: ClassVar[bool] = False
    # Reports ``truncation_rate`` (its answers that hit max_new_tokens) whenever the model can encode text,
    # so a suite may gate on it (``toxicity.truncation_rate <= 0.2``).
    reports_truncation: ClassVar[bool] = False
    # What a reader should do about a high truncation rate (the report's warning ends with it).
    truncation_advice: ClassVar[str] = RAISE_CAP

    @dataclass
    class Options:
        pass

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def metric_infos(cls, options: Any) -> dict[str, MetricInfo]:
        """The metrics this section reports with ``options``, each with its direction and description.

        The one place a section declares its metrics: suites check gates against it, ``audit ls``
        lists it and :meth:`evaluate` attaches it to the result. The default is the static
        ``METRICS``; override it when options add or remove metrics (one per n-gram order, recipe, ...).
        """
        return dict(cls.METRICS)

    @classmethod
    def metric_names(cls, options: Any) -> set[str] | None:
        """Metric names a suite may gate on with these options (None: not known in advance).

        Override only to return None, for a section that can also report metrics it cannot name
        before it runs (e.g. ``evaluate`` modules, axes of a custom terms file).
        """
        return set(cls.metric_infos(options))

    def evaluate(self, ctx: Context) -> SectionResult:
        """Run the section and time it (the runner records an exception as the section's error)."""
        result = SectionResult(name=self.name)
        start = time.perf_counter()
        first = len(ctx.truncated)
        self._evaluate(ctx, result)
        result.seconds = time.perf_counter() - start
        record_truncation(result, ctx.truncated[first:], self.truncation_advice)
        # Declared metrics the section reported get their info; infos the section attached itself
        # (metrics only known at run time) stay as they are.
        for m, info in self.metric_infos(self.options).items():
            if m in result.metrics:
                result.metric_info.setdefault(m, info)
        result.metrics = {k: float(v) if v is not None else math.nan for k, v in result.metrics.items()}
        return result

    def _evaluate(self, ctx: Context, result: SectionResult) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def metric(name: str, higher_is_better: bool | None, description: str, *, per_sample: bool = True) -> tuple[str, MetricInfo]:
    """Shorthand for declaring a metric in an evaluator's ``METRICS``.

    ``higher_is_better=None`` declares a diagnostic: a figure with no better direction (a p-value,
    a count, an attack's query count), shown without an arrow and not usable in a regression gate.
    """
    return name, MetricInfo(name=name, higher_is_better=higher_is_better, description=description, per_sample=per_sample)


TRUNCATION_WARN = 0.5   # a section where more than half the answers were cut off says so


def hit_cap(model: Model, texts: Sequence[str], max_new_tokens: int) -> list[bool]:
    """Per answer: did it run to ``max_new_tokens`` instead of stopping?

    Generations are cached as text, so this is read back from the text: an answer that re-encodes
    to at least ``max_new_tokens - 1`` tokens hit the cap (one token of slack: a cut that split a
    multi-byte character drops that token, and re-encoding may merge two). An answer that stopped
    one token short of the cap is counted too; that errs on the side of a warning. Models that
    cannot encode text (no tokenizer) give no flags.
    """
    encode = getattr(model, "encode", None)
    if encode is None or not texts:
        return []
    try:
        return [len(encode(t)) >= max_new_tokens - 1 for t in texts]
    except Exception as e:  # noqa: BLE001 - a diagnostic must never cost the section
        log.debug("truncation: cannot encode answers (%s)", e)
        return []


def record_truncation(result: SectionResult, flags: Sequence[bool], advice: str = RAISE_CAP) -> None:
    """``truncation_rate`` of the answers a section generated, and a warning ending in ``advice`` when it is high."""
    if not flags:
        return
    rate = sum(flags) / len(flags)
    result.metrics["truncation_rate"] = rate
    result.sample_values["truncation_rate"] = [float(f) for f in flags]
    result.metric_info.setdefault("truncation_rate", MetricInfo(
        "truncation_rate", higher_is_better=False,
        description="share of the section's answers that hit max_new_tokens without stopping (scored cut off)"))
    result.details["truncation"] = {"answers": len(flags), "truncated": int(sum(flags)), "rate": rate, "advice": advice}
    if rate > TRUNCATION_WARN:
        msg = (f"{sum(flags)} of {len(flags)} answers ({rate:.0%}) hit max_new_tokens without stopping and are scored cut "
               f"off: {advice}")
        result.details.setdefault("warnings", []).append(msg)


def warn_truncation(sections: dict[str, SectionResult]) -> str | None:
    """One console line for every section whose answers mostly hit the cap (each section's own warning
    stays in its details and the report); returns the line, or None when no section is over
    :data:`TRUNCATION_WARN`. A model that never stops (a base model with no end-of-turn token) would
    otherwise print the same warning once per section."""
    high = [(n, s.details["truncation"]) for n, s in sections.items()
            if s.details.get("truncation", {}).get("rate", 0.0) > TRUNCATION_WARN]
    if not high:
        return None
    parts = ", ".join(f"{n} {t['truncated']}/{t['answers']}" for n, t in high)
    raise_cap = [n for n, t in high if t.get("advice", RAISE_CAP) == RAISE_CAP]
    whose = "that section's" if len(raise_cap) == 1 else "those sections'"
    line = f"answers hit max_new_tokens without stopping and are scored cut off in {parts}: "
    if len(raise_cap) == len(high):
        line += f"raise {whose} max_new_tokens (see the report's truncation rates)"
    elif raise_cap:
        line += (f"raise {', '.join(raise_cap)}'s max_new_tokens; the report says why a larger cap does not help "
                 f"{', '.join(n for n, _ in high if n not in raise_cap)}")
    else:
        line += "the report says what that means for each section (a larger cap is not the fix there)"
    if all(t["rate"] == 1.0 for _, t in high) and sum(t["answers"] for _, t in high) >= 20:
        line += "; no answer stopped at all: the model may never emit its end token (a base model), which no cap fixes"
    log.warning("%s", line)
    return line


def mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def check_generation_overrides(overrides: dict[str, Any]) -> None:
    """Field-named errors for a section's ``generation:`` overrides (full validation happens at run time)."""
    valid = [f.name for f in dataclasses.fields(GenerationSettings)]
    for key in overrides:
        if key not in valid:
            raise ValueError(f"generation: unknown field {key!r}{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


def default_protect() -> list[str]:
    """The ``protect`` default of sections that perturb prompts: role tags at line starts
    (:data:`audit.perturb.ROLE_TAGS`), so only the user's words change."""
    return list(ROLE_TAGS)


def merged_settings(base: GenerationSettings, overrides: dict[str, Any], section: str) -> GenerationSettings:
    """The suite's generation settings with a section's overrides applied (validated)."""
    if not overrides:
        return base
    try:
        return dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as e:
        raise AuditError(f"{section}.generation: {e}") from None


def make_context(model, records, settings: GenerationSettings | None = None, *, seed: int = 0, use_cache: bool = False,
                 progress: bool = False, cache_root: Path | None = None, base_dir: Path | None = None) -> Context:
    """Build a :class:`Context` with generations for ``records`` (for the Python API and tests)."""
    settings = settings or GenerationSettings()
    ctx = Context(model=model, samples=[], settings=settings, seed=seed, progress=progress, cache_root=cache_root,
                  use_cache=use_cache, base_dir=base_dir or Path.cwd())
    ctx.samples = generate_samples(model, records, settings, seed=seed, cache=ctx.generation_cache(), progress=progress)[0]
    return ctx


Hook = Callable[[Context, SectionResult], None]
