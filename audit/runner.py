"""The audit loop: validate, load, generate once (cached), run each section, gate, write.

Example:
    >>> from audit import run_suite
    >>> result = run_suite("demo", model="builtin:micro", out_dir=None, progress=False)  # doctest: +SKIP
    >>> result.metrics["diversity.distinct_2"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import platform
import time
import traceback
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .attacks.export import write_adversarial_jsonl
from .baseline import check_baseline_prompt_format, data_fingerprint, identity, prepare_baseline
from .data import data_location
from .errors import AuditError, first_line
from .evaluators import SECTIONS
from .evaluators.base import Context, warn_truncation
from .gates import apply_gates
from .io.output_dirs import output_lock
from .generation import generate_samples, generation_cache
from .models.distributed import distribute, log_share, rank_cache_dir, setup
from .models.interface import Model
from .models.load import load_model
from .models.served import ServedUnsupported
from .preflight import check_window, preflight
from .registry import did_you_mean
from .report import check_outputs, write_report
from .results import AuditResult, SectionResult
from .suite import SuiteConfig, load_suite
from .tracking import MlflowRun, TrackingSettings, ended_on_failure, log_audit, resolve_uri
from .tracking.store import display_uri, finished_or_failed, served_secrets
from .version import __version__

log = logging.getLogger("audit")

_VERSIONED = ["torch", "transformers", "tokenizers", "sacrebleu", "rouge-score", "nltk", "evaluate", "textattack",
              "captum", "detoxify", "peft", "accelerate"]


def package_versions() -> dict[str, str]:
    out = {"audit": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_suite(suite: SuiteConfig | str | os.PathLike, *, model: Model | str | None = None,
              out_dir: str | os.PathLike | None = None, outputs: Sequence[str] = (), progress: bool = True,
              use_cache: bool = True, cache_dir: str | os.PathLike | None = None,
              only_sections: Sequence[str] | None = None, seed: int | None = None,
              baseline: AuditResult | str | os.PathLike | None = None, force_baseline: bool = False,
              tracking: TrackingSettings | dict[str, Any] | bool | None = None) -> AuditResult:
    """Run a suite on a model and return the :class:`AuditResult` (written to ``out_dir`` if given).

    Args:
        suite: a :class:`SuiteConfig`, a suite file path, or a bundled suite name (``"demo"``).
        model: an already-loaded :class:`~audit.models.interface.Model` (local or served), or a model spec
            string overriding the suite's.
        out_dir: where ``results.json`` and ``samples.jsonl`` (and the default reports) go.
        outputs: extra output files; the extension picks the format (see ``audit.report``).
        progress: show progress bars.
        use_cache: reuse generations and scores cached on disk by earlier (or interrupted) runs.
        cache_dir: cache location (default: the user cache dir).
        only_sections: run just these sections of the suite.
        seed: override the suite's seed.
        baseline: a baseline ``results.json`` (or loaded result) for regression gates; refused before
            anything is generated if it measured another suite version, data or generation settings.
        force_baseline: compare with an incompatible baseline anyway (the report says so).
        tracking: log the run to MLflow (docs/tracking.md): None follows the suite's ``tracking:`` block,
            False turns it off, a :class:`~audit.tracking.TrackingSettings` replaces it and a mapping of
            its fields (``{"mlflow": "http://127.0.0.1:5000"}``, what ``--mlflow`` gives) is applied over it.
            MLflow missing or a server that does not answer fails before the model loads; a failure
            logging after the audit raises :class:`~audit.tracking.store.TrackingFailed` (holding the
            result) once results.json and the reports are written.
    """
    t0 = time.perf_counter()
    # Under `accelerate launch`/torchrun: join the process group; other ranks keep their own cache copy.
    world = setup()
    cache_dir = rank_cache_dir(cache_dir, world)
    suite = _prepare_suite(suite, model=model if isinstance(model, str) else None, seed=seed, only_sections=only_sections)
    check_outputs(out_dir, outputs)   # an unwritable output fails now, not after the whole run
    # MLflow missing or its server down fails now, before the model loads; rank 0 alone logs.
    run = _start_tracking(_tracking_settings(suite, tracking), suite, model) if world.is_main else None
    with ended_on_failure(run):
        result, _ = _run(suite, model, world, out_dir=out_dir, outputs=outputs, progress=progress,
                         use_cache=use_cache, cache_dir=cache_dir, baseline=baseline,
                         force_baseline=force_baseline, t0=t0, run=run)
    return result


def _run(suite: SuiteConfig, model, world, *, out_dir, outputs, progress, use_cache, cache_dir, baseline,
         force_baseline, t0, run: MlflowRun | None = None) -> tuple[AuditResult, list[Path]]:
    """The audit itself (run_suite's body): (result, the files written); logged to ``run`` once written."""
    written: list[Path] = []
    # One run at a time writes into out_dir: a second one is refused, never mixed with this one's files.
    with output_lock(out_dir) if out_dir is not None and world.is_main else contextlib.nullcontext():
        data_path = data_location(suite.data.path, suite.base_dir)
        # The data, and the model as far as knowable without its weights (one line naming the file or field).
        records = preflight(suite, check_model=model is None or isinstance(model, str))
        # The result's identity is known before anything runs: a baseline that measured something else
        # is refused now, not after generation.
        result = _new_result(suite, records, data_path)
        base_summary = None
        if baseline is not None:
            baseline, base_summary = prepare_baseline(baseline, identity(result), force=force_baseline)
        timings = {"validate_and_load_data": time.perf_counter() - t0}

        t = time.perf_counter()
        if model is not None and not isinstance(model, str):
            lm = model   # a backend the caller loaded: local weights or a served model
        else:
            lm = load_model(suite.model)
        lm = distribute(lm)   # several processes: generation and scoring split by rank, outputs gathered
        check_window(suite.generation.max_new_tokens, lm.max_length, suite.path or "<suite>", lm.spec)
        timings["load_model"] = time.perf_counter() - t
        if baseline is not None:  # the chat template is known once the tokenizer is loaded
            check_baseline_prompt_format(baseline, base_summary, lm.prompt_format, force=force_baseline)
        info = lm.info()
        params = info.parameters   # unknown (None) behind a server
        log.info("model %s: %s, %s parameters, %s on %s", lm.spec, info.architecture,
                 f"{params:,}" if isinstance(params, int) else "unknown", info.dtype, lm.device)

        t = time.perf_counter()
        ctx = _generation_pass(suite, lm, records, cache_root=Path(cache_dir) if cache_dir else None, use_cache=use_cache,
                               progress=progress)
        timings["generate"] = time.perf_counter() - t
        timings.update(run_sections(ctx, suite.sections))

        log_share(lm)
        _complete(result, lm, ctx)
        result.baseline = base_summary
        apply_gates(result, suite.gates, baseline=baseline, confidence=suite.confidence)
        timings["total"] = time.perf_counter() - t0
        result.timings = {k: round(v, 4) for k, v in timings.items()}
        if out_dir is not None and world.is_main:   # rank 0 alone writes (every rank holds the same result)
            written = write_outputs(result, out_dir, outputs)
        if run is not None:   # inside the lock: no other run rewrites the files being uploaded
            _finish_tracking(run, result, written, out_dir)
        return result, written


def _tracking_settings(suite: SuiteConfig, tracking) -> TrackingSettings | None:
    """The tracking this run does: the suite's block, replaced or overridden by ``tracking``."""
    if tracking is False:
        return None
    if isinstance(tracking, TrackingSettings):
        return tracking
    base = suite.tracking or TrackingSettings()
    return base.merged(tracking) if isinstance(tracking, dict) else base


def _start_tracking(settings: TrackingSettings | None, suite: SuiteConfig, model=None) -> MlflowRun | None:
    if settings is None or not settings.enabled:
        return None
    name = getattr(model, "spec", None) if model is not None and not isinstance(model, str) else None
    name = name or getattr(suite.model, "path", "") or ""
    # The suite's served model's key, and that of a served model the caller loaded (its spec names the variable).
    secrets = served_secrets(suite.model) + served_secrets(getattr(model, "spec_obj", None))
    return MlflowRun(resolve_uri(settings.mlflow), experiment=settings.experiment or suite.name,
                     run_name=settings.run_name or f"{suite.name} {name}".strip(),
                     tags={"audit.kind": "audit", **settings.tags}, secrets=secrets)


def _finish_tracking(run: MlflowRun, result: AuditResult, written: list[Path], out_dir) -> None:
    """Log the finished audit; results.json and the reports are already on disk whatever happens here."""
    files = list(written)
    if out_dir is not None and (Path(out_dir) / "samples.jsonl").is_file():   # beside results.json (result.save)
        files.insert(1, Path(out_dir) / "samples.jsonl")
    where = f"results are in {out_dir}" if out_dir is not None else "the result was not written (no out_dir)"
    with finished_or_failed(run, result, where=where):
        log_audit(run, result, artifacts=files, out_dir=Path(out_dir) if out_dir is not None else None)
    log.info("mlflow: run %s in experiment %s at %s", run.run_id, run.experiment_id, display_uri(run.uri))


def _prepare_suite(suite: SuiteConfig | str | os.PathLike, *, model: str | None, seed: int | None,
                   only_sections: Sequence[str] | None) -> SuiteConfig:
    """The suite this run measures: a copy (the caller's is never modified) with the model and
    seed overrides applied and, with ``only_sections``, just those sections and their gates."""
    suite = dataclasses.replace(suite if isinstance(suite, SuiteConfig) else load_suite(suite)).with_model(model)
    if seed is not None:
        suite.seed = seed
    if only_sections:
        for s in only_sections:
            if s not in suite.sections:
                raise AuditError(f"--section {s!r} is not in suite {suite.name}{did_you_mean(s, suite.sections)}; "
                                 f"it has: {', '.join(suite.sections)}")
        suite.sections = {k: v for k, v in suite.sections.items() if k in only_sections}
        suite.gates = [g for g in suite.gates if g.metric.partition(".")[0] in suite.sections]
    return suite


def _new_result(suite: SuiteConfig, records, data_path: Path | str) -> AuditResult:
    """The result of a run of ``suite`` on ``records`` before anything ran: what a baseline must match."""
    d = suite.data
    return AuditResult(
        suite={"name": suite.name, "path": suite.path, "version": suite.version, "fingerprint": suite.fingerprint(),
               "sections": list(suite.sections)},
        model={}, generation=asdict(suite.generation), seed=suite.seed,
        data={"path": str(data_path), "split": d.split, "limit": d.limit, "records": len(records),
              "fingerprint": data_fingerprint(records)},
    )


def _generation_pass(suite: SuiteConfig, lm: Model, records, *, cache_root: Path | None, use_cache: bool,
                     progress: bool) -> Context:
    """Generate (or read back from the cache) the main prompt set once; the context every section gets."""
    gen_cache = generation_cache(lm, cache_root, enabled=use_cache)
    samples, reused = generate_samples(lm, records, suite.generation, seed=suite.seed, cache=gen_cache, progress=progress)
    total = len(records) * suite.generation.num_samples
    log.info("generation: %d of %d generations reused from cache, %d generated", reused, total, total - reused)
    return Context(model=lm, samples=samples, settings=suite.generation, seed=suite.seed, base_dir=suite.base_dir,
                   progress=progress, cache_root=cache_root, use_cache=use_cache, gen_cache=gen_cache)


def run_sections(ctx: Context, sections: dict[str, Any]) -> dict[str, float]:
    """Run each section on ``ctx`` in order into ``ctx.sections``; returns each one's seconds.

    A section that raises is recorded as failed (its error, one line) and the next one runs.
    """
    timings = {}
    for name, options in sections.items():
        evaluator = SECTIONS.get(name)(options)
        t = time.perf_counter()
        log.info("section %s ...", name)
        try:
            if evaluator.needs_weights and not ctx.model.has_weights:
                raise ServedUnsupported(f"section {name} needs local model weights; {ctx.model.spec} is served (run "
                                        f"this section on a local copy of the model)")
            section = evaluator.evaluate(ctx)
        except Exception as e:  # one failing section must not lose the others' results
            if getattr(e, "fatal", False):
                raise   # the server is gone for every section: stop with exit 2 (generations stay cached)
            log.debug("section %s failed:\n%s", name, traceback.format_exc())
            msg = first_line(e, default="")
            section = SectionResult(name=name, error=f"{type(e).__name__}: {msg}" if msg else type(e).__name__)
            log.error("section %s failed: %s", name, section.error)
        section.seconds = time.perf_counter() - t
        ctx.sections[name] = section
        timings[f"section.{name}"] = section.seconds
    warn_truncation(ctx.sections)
    return timings


def _complete(result: AuditResult, lm: Model, ctx: Context) -> None:
    """Fill ``result`` with what the run measured: model, sections, samples and the flat metrics."""
    result.model = asdict(lm.info())
    result.sections = ctx.sections
    result.samples = ctx.samples
    result.versions = package_versions()
    result.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result.metrics = {f"{n}.{k}": v for n, s in ctx.sections.items() for k, v in s.metrics.items()}


def write_outputs(result: AuditResult, out_dir: str | os.PathLike | None, outputs: Sequence[str] = ()) -> list[Path]:
    """Write ``results.json`` + ``samples.jsonl`` into ``out_dir`` and every file in ``outputs``."""
    written = []
    if out_dir is not None:
        written.append(result.save(out_dir))
        robustness = result.sections.get("robustness")
        if robustness is not None and not robustness.error:
            # Successful adversarial prompts, for `audit harden` / `audit finetune` to train on.
            written.append(write_adversarial_jsonl(result, Path(out_dir) / "adversarial.jsonl"))
    for path in outputs:
        written.append(write_report(result, path))
    return written
