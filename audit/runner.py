"""The audit loop: validate, load, generate once (cached), run each section, gate, write.

Example:
    >>> from audit import run_suite
    >>> result = run_suite("demo", model="builtin:micro", out_dir=None, progress=False)  # doctest: +SKIP
    >>> result.metrics["diversity.distinct_2"]  # doctest: +SKIP
"""

from __future__ import annotations

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
from typing import Sequence

from . import __version__
from .errors import first_line
from .cache import DiskCache
from .suite import SuiteConfig, load_suite
from .data import load_records
from .evaluators import SECTIONS
from .evaluators.base import Context, cached_generate
from .baseline import data_fingerprint
from .gates import apply_gates
from .model import LanguageModel
from .results import AuditResult, SampleRecord, SectionResult

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


def run_suite(suite: SuiteConfig | str | os.PathLike, *, model: LanguageModel | str | None = None,
              out_dir: str | os.PathLike | None = None, outputs: Sequence[str] = (), progress: bool = True,
              use_cache: bool = True, cache_dir: str | os.PathLike | None = None,
              only_sections: Sequence[str] | None = None, seed: int | None = None,
              baseline: AuditResult | str | os.PathLike | None = None, force_baseline: bool = False) -> AuditResult:
    """Run a suite on a model and return the :class:`AuditResult` (written to ``out_dir`` if given).

    Args:
        suite: a :class:`SuiteConfig`, a suite file path, or a bundled suite name (``"demo"``).
        model: an already-loaded :class:`LanguageModel`, or a model spec overriding the suite's.
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
    """
    t0 = time.perf_counter()
    # Under `accelerate launch`/torchrun: join the process group; other ranks keep their own cache copy.
    from .distributed import distribute, rank_cache_dir, setup

    world = setup()
    cache_dir = rank_cache_dir(cache_dir, world)
    if not isinstance(suite, SuiteConfig):
        suite = load_suite(suite, model_override=model if isinstance(model, str) else None)
    suite = dataclasses.replace(suite)  # the caller's SuiteConfig is never modified
    if isinstance(model, str):
        from .served import override_model

        suite.model = override_model(suite.model, model)
    if seed is not None:
        suite.seed = seed
    sections = dict(suite.sections)
    if only_sections:
        from .errors import AuditError
        from .registry import did_you_mean

        for s in only_sections:
            if s not in sections:
                raise AuditError(f"--section {s!r} is not in suite {suite.name}{did_you_mean(s, sections)}; it has: {', '.join(sections)}")
        sections = {k: v for k, v in sections.items() if k in only_sections}
        suite.gates = [g for g in suite.gates if g.metric.partition(".")[0] in sections]
    d = suite.data
    data_path = suite.resolve_path(d.path)
    records = load_records(data_path, prompt_field=d.prompt_field, reference_field=d.reference_field, split=d.split, limit=d.limit)
    base_summary = None
    if baseline is not None:
        from .baseline import check_baseline, load_baseline, suite_identity, summarize

        base_path = "" if isinstance(baseline, AuditResult) else str(baseline)
        baseline = baseline if isinstance(baseline, AuditResult) else load_baseline(baseline)
        forced = check_baseline(baseline, suite_identity(suite, records), force=force_baseline, path=base_path)
        base_summary = summarize(baseline, path=base_path, incompatible=forced)
    timings = {"validate_and_load_data": time.perf_counter() - t0}

    t = time.perf_counter()
    if model is not None and not isinstance(model, str):
        lm = model   # an adapter the caller loaded: LanguageModel or audit.served.ServedModel
    else:
        from .served import load_model   # the one dispatch point: served endpoint or local weights

        lm = load_model(suite.model)
    lm = distribute(lm)   # several processes: generation and scoring split by rank, outputs gathered
    timings["load_model"] = time.perf_counter() - t
    if baseline is not None:  # the chat template is known once the tokenizer is loaded
        from .baseline import check_prompt_format

        forced = check_prompt_format(baseline, lm.prompt_format, force=force_baseline, path=base_path)
        if forced and base_summary is not None:
            base_summary["incompatible"] = "; ".join(r for r in (base_summary.get("incompatible"), forced) if r)
    params = lm.info().parameters
    log.info("model %s: %s, %s parameters, %s on %s", lm.spec, lm.info().architecture,
             f"{params:,}" if isinstance(params, int) else "unknown", lm.info().dtype, lm.device)

    cache_root = Path(cache_dir) if cache_dir else None
    t = time.perf_counter()
    gen_cache = DiskCache(cache_root, f"gen-{lm.fingerprint}", enabled=use_cache)
    gens, reused = cached_generate(lm, [r.model_input for r in records], suite.generation, seed=suite.seed, cache=gen_cache,
                                   progress=progress)
    total = len(records) * suite.generation.num_samples
    log.info("generation: %d of %d generations reused from cache, %d generated", reused, total, total - reused)
    timings["generate"] = time.perf_counter() - t
    samples = [SampleRecord(id=r.id, prompt=r.prompt, reference=r.reference, generations=g, metadata=dict(r.metadata),
                            messages=r.messages) for r, g in zip(records, gens)]
    ctx = Context(model=lm, samples=samples, settings=suite.generation, seed=suite.seed, base_dir=suite.base_dir,
                  progress=progress, cache_root=cache_root, use_cache=use_cache, _gen_cache=gen_cache)

    for name, options in sections.items():
        evaluator = SECTIONS.get(name)(options)
        t = time.perf_counter()
        log.info("section %s ...", name)
        try:
            if getattr(evaluator, "needs_weights", False) and not getattr(lm, "has_weights", True):
                from .served import ServedUnsupported

                raise ServedUnsupported(f"section {name} needs local model weights; {lm.spec} is served (run this "
                                        f"section on a local copy of the model)")
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

    from .distributed import log_share

    log_share(lm)
    info = lm.info()
    result = AuditResult(
        suite={"name": suite.name, "path": suite.path, "version": suite.version, "fingerprint": suite.fingerprint(),
               "sections": list(sections)},
        model=asdict(info), generation=asdict(suite.generation), seed=suite.seed,
        sections=ctx.sections, samples=samples, versions=package_versions(),
        data={"path": str(data_path), "split": d.split, "limit": d.limit, "records": len(records),
              "fingerprint": data_fingerprint(records)},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    result.metrics = {f"{n}.{k}": v for n, s in ctx.sections.items() for k, v in s.metrics.items()}
    result.baseline = base_summary
    apply_gates(result, suite.gates, baseline=baseline, confidence=suite.confidence)
    timings["total"] = time.perf_counter() - t0
    result.timings = {k: round(v, 4) for k, v in timings.items()}
    if out_dir is not None and world.is_main:   # rank 0 alone writes (every rank holds the same result)
        write_outputs(result, out_dir, outputs)
    return result


def write_outputs(result: AuditResult, out_dir: str | os.PathLike | None, outputs: Sequence[str] = ()) -> list[Path]:
    """Write ``results.json`` + ``samples.jsonl`` into ``out_dir`` and every file in ``outputs``."""
    from .report import write_report

    written = []
    if out_dir is not None:
        written.append(result.save(out_dir))
        robustness = result.sections.get("robustness")
        if robustness is not None and not robustness.error:
            # Successful adversarial prompts, for `audit harden` / `audit finetune` to train on.
            from .attacks.export import write_adversarial_jsonl

            written.append(write_adversarial_jsonl(result, Path(out_dir) / "adversarial.jsonl"))
    for path in outputs:
        written.append(write_report(result, path))
    return written
