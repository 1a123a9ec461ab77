"""The harden loop: attack -> adversarial fine-tune -> re-audit -> before/after report.

1. Run the suite (it must have a ``robustness`` section) on the model: ``before/``, including the
   successful attacks in ``before/adversarial.jsonl``.
   With ``train_split`` (held-out hardening), the attacks to train on come instead from the
   suite's robustness section run on the data's ``train_split`` records (``attack/``), and
   :func:`check_held_out` refuses a training set holding any audited prompt or a perturbation of
   one: the before/after comparison then measures prompts the model never trained on. Without
   it the model trains on the very prompts it is re-audited on (``harden.json``: ``held_out: false``).
2. Build the training set: every successful adversarial prompt paired with the model's clean
   output on the original prompt (``target: target``) or the dataset reference
   (``target: reference``), plus the clean prompts with the same targets, so the model learns to
   answer the perturbed prompt as it answers the clean one without drifting on clean prompts.
3. Fine-tune (by default CE plus the clean-vs-perturbed ``consistency`` KL, on the pairs and a
   typo'd copy of each; any :class:`FinetuneConfig` field can be overridden, e.g. ``losses: {ce: 1,
   pgd: 1}``) and save the hardened model to ``train/model``.
4. Re-run the same suite with the same seed on the hardened model: ``after/``, with ``before`` as
   its baseline, so a suite's ``regression`` gates (``quality.chrf regression <= 2%``) hold the
   hardened model to the original. The ``before`` audit has nothing to regress from: it is gated
   by the suite's other gates only.
5. Write ``comparison.html`` / ``.md`` / ``.json`` (before vs after) and ``harden.json``.

The verdict is the suite's gates on the hardened model.

Example:
    >>> from audit.harden import harden
    >>> r = harden("builtin:tiny", "audit/suites/demo.yaml", "runs/harden")  # doctest: +SKIP
    >>> r.before.metrics["robustness.attack_success_rate"], r.after.metrics["robustness.attack_success_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuditError
from .finetune.data import TextPair, read_adversarial, write_pairs_jsonl
from .finetune.leaks import LEAK_SIMILARITY, LeakError, check_held_out  # noqa: F401  (harden's public names)
from .finetune.run import check_out_dir, finetune
from .io.output_dirs import output_lock
from .models.distributed import world
from .models.local import LanguageModel
from .report import WRITERS
from .report.compare import COMPARE_WRITERS, write_comparison
from .results import AuditResult, atomic_write, json_safe
from .runner import run_suite
from .suite import SuiteConfig, load_suite
from .tracking import MlflowRun, ended_on_failure, log_harden, resolve_uri
from .tracking.store import finished_or_failed, served_secrets

log = logging.getLogger("audit")

#: Fine-tuning defaults for hardening; any FinetuneConfig field in ``config`` overrides them.
#: Losses and data from the held-out experiment on a real task model (BENCHMARKS.md, "Hardening a real
#: task model"): no configuration separated from plain CE there, and CE + the clean-vs-perturbed KL on
#: typo'd copies of every training prompt had the lowest transfer-attack rates at 0.43x the training
#: time of CE + embedding PGD (the earlier default, which left the trained-on attack's success unchanged).
HARDEN_DEFAULTS: dict[str, Any] = {
    "losses": {"ce": 1.0, "consistency": 1.0},
    "augment": {"transformations": ["char_swap", "char_delete", "qwerty"], "per_prompt": 1, "pct_words_to_swap": 0.1},
    "epochs": 3,
    "batch_size": 8,
    "lr": 1e-4,
    "warmup_steps": 0,
    "val_fraction": 0.1,
    "eval_every": 20,
    "save_every": 1000,
    "keep_checkpoints": 1,
    "max_length": 256,
}


#: Fine-tuning defaults for ``objective="safety"`` (the safety mix of :mod:`audit.safety_training`): plain
#: CE on refusals, wrapped refusals, the look-alikes' own answers and the task records, one pass.
SAFETY_DEFAULTS: dict[str, Any] = {
    "losses": {"ce": 1.0},
    "epochs": 1,
    "batch_size": 8,
    "lr": 2e-4,
    "warmup_steps": 0,
    "val_fraction": 0.0,
    "eval_every": 1000,
    "save_every": 1000,
    "keep_checkpoints": 1,
    "max_length": 384,
}

OBJECTIVES = ("robustness", "safety")


@dataclass
class HardenResult:
    """The before/after audits, the training run and where everything went."""

    before: Any                      # AuditResult of the original model
    after: Any                       # AuditResult of the hardened model (== before when nothing was trained)
    out_dir: Path
    model_dir: Path | None           # the hardened model (None: no successful attack, nothing trained)
    n_adversarial: int               # successful adversarial prompts trained on
    n_train: int                     # training pairs in total (adversarial + clean)
    train: Any = None                # TrainResult
    reports: list[Path] = field(default_factory=list)
    objective: str = "robustness"
    mix: dict[str, Any] | None = None    # objective safety: what the training mix held

    @property
    def passed(self) -> bool:
        return bool(self.after.passed)


def training_pairs(before, adversarial_path: Path, *, target: str = "target", include_clean: bool = True) -> tuple[list, int]:
    """(pairs, number of adversarial pairs) from a before-audit and its ``adversarial.jsonl``."""
    adv = read_adversarial(adversarial_path, target=target) if adversarial_path.exists() else []
    pairs = list(adv)
    if include_clean:
        clean_target: dict[str, tuple[str, str | None]] = {}   # prompt -> (target, the model's clean output)
        for s in before.samples:
            own = s.generations[0] if s.generations else ""
            out = s.reference if target == "reference" and s.reference else own
            if out and out.strip():
                clean_target[s.prompt] = (out, own if own.strip() else None)
        # The clean side of every attacked prompt, and the rest of the suite's clean prompts.
        for p in adv:
            orig = p.meta.get("original_prompt")
            if orig and orig not in clean_target:
                clean_target[orig] = (p.target, p.meta.get("pair_target"))
        # pair_target travels to augmented copies of the clean prompts (augment: in the config).
        pairs.extend(TextPair(prompt, tgt, source="clean", meta={"pair_target": own} if own and own != tgt else {})
                     for prompt, (tgt, own) in clean_target.items())
    return pairs, len(adv)


def _attack_split_suite(suite, split: str, recipes: list[str] | None = None):
    """The suite's robustness section alone, on the data's ``split`` records (where training attacks come from),
    with ``recipes`` only when given (the suite's other recipes then measure transfer: never trained on)."""
    if suite.data.split == split:
        raise AuditError(f"harden: train_split {split!r} is the split the suite audits (data.split); "
                         f"training on it would measure the training prompts")
    section = suite.sections["robustness"]
    unknown = [r for r in recipes or [] if r not in section.recipes]
    if unknown:
        raise AuditError(f"harden: attack recipe(s) {', '.join(unknown)} are not in the suite's robustness recipes "
                         f"({', '.join(section.recipes)})")
    # Only the attacks: the worst case over perturbations measures, it finds nothing to train on.
    attacks = dataclasses.replace(section, perturbations=[], recipes=list(recipes) if recipes else section.recipes)
    return dataclasses.replace(suite, name=f"{suite.name}-attack-{split}", data=dataclasses.replace(suite.data, split=split),
                               sections={"robustness": attacks}, gates=[])


def harden(model, suite, out_dir: str | os.PathLike, *, config: dict[str, Any] | None = None, target: str = "auto",
           include_clean: bool = True, progress: bool = True, use_cache: bool = True,
           cache_dir: str | os.PathLike | None = None, train_split: str | None = None, objective: str = "robustness",
           safety: Any = None, attack_recipes: list[str] | None = None) -> HardenResult:
    """Attack a model with a suite's robustness section, fine-tune on the successful attacks, re-audit.

    Args:
        model: a model spec (``builtin:tiny``, a directory) or a loaded ``LanguageModel``
            (not modified: training works on a copy); None uses the suite's model.
        suite: a suite file / bundled name / ``SuiteConfig`` with a ``robustness`` section.
        out_dir: receives ``before/``, ``train/`` (with ``train/model``), ``after/``,
            ``comparison.{html,md,json}`` and ``harden.json``.
        config: :class:`~audit.finetune.config.FinetuneConfig` fields overriding
            :data:`HARDEN_DEFAULTS` (e.g. ``{"losses": {"ce": 1, "smart": 1}, "max_steps": 200}``).
        target: ``target`` (the model's clean output), ``reference`` (the dataset's) or ``auto``
            (the default: ``reference`` when every record trained on has one, else ``target``). On a
            real task model, the model's own answers as targets raised reference perplexity by 42%
            in 60 steps; references kept it (BENCHMARKS.md, "Hardening a real task model").
        include_clean: also train on the clean prompts (keeps clean quality).
        train_split: attack the data's records of this split to build the training set (held-out
            hardening; the suite's own split is audited before and after and never trained on).
        objective: ``robustness`` (the default: train on the successful attacks) or ``safety``: train on
            the safety section's TRAIN split (refusals of harmful and jailbreak-wrapped requests, the
            model's own answers to harmless look-alikes, and the data's ``train_split`` task records;
            :mod:`audit.safety_training`) and audit the test split before and after.
        safety: :class:`~audit.safety_training.SafetyTraining` (or a dict of its fields) for ``objective="safety"``.
        attack_recipes: attack ``train_split`` with these of the suite's recipes only (default: all); the
            others are audited before and after but never trained on, so they measure transfer.

    Returns:
        :class:`HardenResult`; ``result.passed`` is the suite's gates on the hardened model.

    Example:
        >>> r = harden("builtin:micro", "tests/suites/robust.yaml", "runs/h", config={"max_steps": 10})  # doctest: +SKIP
    """
    if target not in ("auto", "target", "reference"):
        raise AuditError(f"harden: target must be 'auto', 'target' or 'reference', got {target!r}")
    if objective not in OBJECTIVES:
        raise AuditError(f"harden: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not isinstance(suite, SuiteConfig):
        suite = load_suite(suite, model_override=model if isinstance(model, (str, os.PathLike)) else None)
    # Before the first audit, not after it: writable, apart from the model (train/model would replace it).
    out = check_out_dir(out_dir, model if model is not None else suite.model, out_field="harden: out_dir", trains_in="train")
    # One run at a time writes into out_dir (its before/, train/, after/ are locked again by each step).
    with output_lock(out, what="harden out_dir") if world().is_main else contextlib.nullcontext():
        # MLflow missing or its server down fails now, before the first audit; rank 0 alone logs.
        run = _start_tracking(config or {}, suite, out) if world().is_main else None
        with ended_on_failure(run):
            if objective == "safety":
                result = _harden_safety(model, suite, out, config=config, safety=safety, train_split=train_split,
                                        progress=progress, use_cache=use_cache, cache_dir=cache_dir, run=run)
            else:
                result = _harden_robustness(model, suite, out, config=config, target=target, include_clean=include_clean,
                                            progress=progress, use_cache=use_cache, cache_dir=cache_dir,
                                            train_split=train_split, attack_recipes=attack_recipes, run=run)
        if run is not None:
            _finish_tracking(run, result)
        return result


def _start_tracking(config: dict[str, Any], suite: SuiteConfig, out: Path) -> MlflowRun | None:
    """harden's MLflow run (training curves and both audits in one run), when the finetune config's
    ``report_to`` names mlflow, ``mlflow_uri`` is set, or the suite's ``tracking:`` block asks for MLflow."""
    report_to = config.get("report_to")
    track = suite.tracking
    wanted = (isinstance(report_to, list) and "mlflow" in report_to) or bool(config.get("mlflow_uri")) or \
        (track is not None and track.enabled)
    if not wanted:
        return None
    uri = config.get("mlflow_uri") or (track.mlflow if track is not None and track.enabled else True)
    experiment = config.get("mlflow_experiment") or (track.experiment if track is not None else None) or f"harden-{suite.name}"
    run_name = config.get("mlflow_run_name") or (track.run_name if track is not None else None) or out.name
    tags = {"audit.kind": "harden", "audit.out_dir": str(out), **(track.tags if track is not None else {})}
    return MlflowRun(resolve_uri(uri), experiment=str(experiment), run_name=str(run_name), tags=tags,
                     secrets=served_secrets(suite.model))


def _finish_tracking(run: MlflowRun, result: HardenResult) -> None:
    """Log before/after into ``run`` (the curves are there already); everything is on disk first."""
    out = result.out_dir
    summary = {"adversarial_examples": result.n_adversarial, "training_pairs": result.n_train,
               "steps": result.train.steps if result.train else 0,
               "best_val_loss": result.train.best_val_loss if result.train else None}
    with finished_or_failed(run, result, where=f"results are in {out}"):
        log_harden(run, result.before, result.after, artifacts=[*result.reports, out / "harden.json"], summary=summary)
        for side in ("before", "after"):   # both are results.json: each under its own artifact folder
            run.log_artifacts([out / side / "results.json", out / side / "report.html"], artifact_path=side)


def _harden_robustness(model, suite: SuiteConfig, out: Path, *, config, target, include_clean, progress, use_cache,
                       cache_dir, train_split, attack_recipes, run=None) -> HardenResult:
    """``harden(objective="robustness")``: attack, train on the successful attacks, re-audit, compare."""
    if "robustness" not in suite.sections:
        raise AuditError(f"harden: suite {suite.name!r} has no robustness section; harden needs its attacks "
                         f"(sections: {', '.join(suite.sections)})")
    if attack_recipes and train_split is None:
        raise AuditError("harden: attack_recipes needs train_split (the attacks are run on that split)")
    if attack_recipes:
        _attack_split_suite(suite, train_split, attack_recipes)   # unknown recipes fail before the first audit
    lm = model if isinstance(model, LanguageModel) else LanguageModel.load(suite.model)
    run_kw = dict(progress=progress, use_cache=use_cache, cache_dir=cache_dir, tracking=False)  # harden's run logs both audits

    log.info("harden 1/4: auditing the original model")
    before = _audit_before(suite, lm, out, run_kw)
    source, source_dir = _attack_source(suite, lm, before, out, train_split, run_kw, attack_recipes)
    if target == "auto":
        target = "reference" if source.samples and all(s.reference for s in source.samples) else "target"
        log.info("harden: training targets: %s", "the dataset's references" if target == "reference" else "the model's own clean answers")
    pairs, n_adv = training_pairs(source, source_dir / "adversarial.jsonl", target=target, include_clean=include_clean)
    if train_split is not None:
        check_held_out(pairs, [s.prompt for s in before.samples])
    if n_adv == 0:
        log.warning("harden: no attack succeeded on the original model; nothing to train on, the model is unchanged")
        reports = _compare(before, before, out)
        _summary(out, before, before, None, n_adv, 0, None, held_out=train_split is not None, target=target)
        return HardenResult(before=before, after=before, out_dir=out, model_dir=None, n_adversarial=0, n_train=0,
                            reports=reports)

    log.info("harden 2/4: fine-tuning on %d adversarial + %d clean pairs", n_adv, len(pairs) - n_adv)
    trained = _train_copy(lm, pairs, out, config, target=target, seed=suite.seed, progress=progress, tracking_run=run)

    log.info("harden 3/4: re-auditing the hardened model (same suite, same seed)")
    after = _audit_after(suite, lm, trained.model_dir, before, out, run_kw)

    log.info("harden 4/4: writing the before/after comparison")
    reports = _compare(before, after, out)
    _summary(out, before, after, trained, n_adv, len(pairs), trained.model_dir, held_out=train_split is not None,
             target=target)
    return HardenResult(before=before, after=after, out_dir=out, model_dir=trained.model_dir, n_adversarial=n_adv,
                        n_train=len(pairs), train=trained, reports=reports)


def _harden_safety(model, suite: SuiteConfig, out: Path, *, config, safety, train_split, progress, use_cache,
                   cache_dir, run=None) -> HardenResult:
    """``harden(objective="safety")``: audit, train on the safety mix of the train split, re-audit, compare."""
    from .generation import generation_cache
    from .safety_training import SafetyTraining, build_safety_mix, mix_summary, safety_section

    safety_section(suite)   # fails before any model loads
    cfg = safety if isinstance(safety, SafetyTraining) else SafetyTraining.from_options(safety)
    lm = model if isinstance(model, LanguageModel) else LanguageModel.load(suite.model)
    run_kw = dict(progress=progress, use_cache=use_cache, cache_dir=cache_dir, tracking=False)  # harden's run logs both audits

    # The mix first: a leak, an unknown risk area or an empty mix fails before the first audit.
    log.info("harden 1/4: building the safety mix from the train split")
    mix = build_safety_mix(lm, suite, train_split=train_split, cfg=cfg, seed=suite.seed,
                           cache=generation_cache(lm, cache_dir, enabled=use_cache), progress=progress)
    log.info("harden: the mix: %s", ", ".join(f"{n} {k}" for k, n in mix.counts.items()))

    log.info("harden 2/4: auditing the original model (the test split)")
    before = _audit_before(suite, lm, out, run_kw)
    failed = before.sections["safety"].error
    if failed:
        raise AuditError(f"harden: the safety section failed on the original model ({failed}); see {out / 'before'}")
    log.info("harden 3/4: fine-tuning on the safety mix (%d pairs)", len(mix.pairs))
    trained = _train_copy(lm, mix.pairs, out, config, target="reference", seed=suite.seed, progress=progress,
                          defaults=SAFETY_DEFAULTS, tracking_run=run)

    log.info("harden 4/4: re-auditing the hardened model (same suite, same seed)")
    after = _audit_after(suite, lm, trained.model_dir, before, out, run_kw)

    reports = _compare(before, after, out)
    summary = mix_summary(mix, cfg)
    _summary(out, before, after, trained, 0, len(mix.pairs), trained.model_dir, held_out=True, target="safety mix",
             objective="safety", extra={"mix": summary})
    return HardenResult(before=before, after=after, out_dir=out, model_dir=trained.model_dir, n_adversarial=0,
                        n_train=len(mix.pairs), train=trained, reports=reports, objective="safety", mix=summary)


#: The metrics harden.json and the CLI show before/after, by objective (prefixes of results.json keys).
SUMMARY_PREFIXES = {"robustness": ("robustness.",),
                    "safety": ("safety.refusal_rate", "safety.jailbreak_success", "safety.injection_success",
                               "safety.over_refusal_rate", "safety.refused_plain_answered_wrapped", "quality.")}


def summary_keys(before, after, objective: str = "robustness") -> list[str]:
    """The flat metric names both audits are compared on for ``objective`` (per-category rows included)."""
    return sorted(k for k in set(before.metrics) | set(after.metrics) if k.startswith(SUMMARY_PREFIXES[objective]))


def _attack_source(suite: SuiteConfig, lm: LanguageModel, before: AuditResult, out: Path, train_split: str | None,
                   run_kw: dict, recipes: list[str] | None = None) -> tuple[AuditResult, Path]:
    """The audit whose successful attacks are trained on, and its directory: the before audit itself, or
    (held-out hardening) the robustness section run on the data's ``train_split`` records."""
    failed = before.sections.get("robustness")
    if failed is not None and failed.error:
        raise AuditError(f"harden: the robustness section failed on the original model ({failed.error}); "
                         f"nothing to train on (see {out / 'before'})")
    if train_split is None:
        return before, out / "before"
    log.info("harden 1b/4: attacking the %r split to build the training set (held out: the audited prompts)", train_split)
    source = run_suite(_attack_split_suite(suite, train_split, recipes), model=lm, out_dir=out / "attack", outputs=(), **run_kw)
    err = source.sections["robustness"].error
    if err:
        raise AuditError(f"harden: the robustness section failed on the {train_split!r} split ({err})")
    return source, out / "attack"


def _train_copy(lm: LanguageModel, pairs: list, out: Path, config: dict[str, Any] | None, *, target: str, seed: int,
                progress: bool, defaults: dict[str, Any] = HARDEN_DEFAULTS, tracking_run=None):
    """Fine-tune a copy of ``lm`` on ``pairs`` (the caller's model object stays the "before" model) into ``out/train``."""
    data = write_pairs_jsonl(pairs, out / "train.jsonl")
    cfg = {**defaults, **(config or {})}
    if "max_length" not in (config or {}) and cfg.get("max_length"):
        # harden's default, not the user's: cut to the model's context window (a value given is checked by finetune)
        cfg["max_length"] = min(cfg["max_length"], lm.max_length)
    if target == "target" and "add_eos" not in (config or {}):
        # The targets are the model's own answers, cut at the suite's max_new_tokens: an eos token after
        # a cut answer would teach the model to stop mid-sentence.
        cfg["add_eos"] = False
    cfg.update(data=str(data), format="prompt_target", prompt_field="prompt", target_field="target", out_dir=str(out / "train"),
               progress=progress, seed=cfg.get("seed", seed))
    cfg.pop("adversarial", None)
    # The chat format travels with the copy: an instruct model trains through its template.
    work = LanguageModel(copy.deepcopy(lm.model), lm.tokenizer, spec=lm.spec, path=lm.path, chat=lm.chat)
    return finetune(cfg, model=work, tracking_run=tracking_run)


def _audit_before(suite: SuiteConfig, lm: LanguageModel, out: Path, run_kw: dict) -> AuditResult:
    """The original model's audit (``before/``): the suite's absolute gates only, it has nothing to regress from."""
    absolute = dataclasses.replace(suite, gates=[g for g in suite.gates if g.max_regression is None])
    return run_suite(absolute, model=lm, out_dir=out / "before", outputs=_reports(out / "before"), **run_kw)


def load_hardened(lm: LanguageModel, model_dir: str | os.PathLike) -> LanguageModel:
    """The trained copy of ``lm`` from ``model_dir``, on its device and dtype, prompted as ``lm`` is: the same
    chat format, system prompt included (a suite's ``model.system_prompt`` is not in the saved model)."""
    hardened = LanguageModel.load(str(model_dir), device=str(lm.device), dtype=str(lm.dtype).replace("torch.", ""))
    if lm.chat is not None:
        hardened.chat = lm.chat
    return hardened


def _audit_after(suite: SuiteConfig, lm: LanguageModel, model_dir: Path, before: AuditResult, out: Path,
                 run_kw: dict) -> AuditResult:
    """The hardened model's audit (``after/``): same suite, same seed, ``before`` as its baseline."""
    hardened = load_hardened(lm, model_dir)
    return run_suite(suite, model=hardened, out_dir=out / "after", outputs=_reports(out / "after"), seed=before.seed,
                     baseline=before, **run_kw)


def _reports(out_dir: Path) -> list[str]:
    return [str(out_dir / "report.html")] if ".html" in WRITERS else []


def _compare(before, after, out: Path) -> list[Path]:
    paths = []
    for ext in (".html", ".md", ".json"):
        if ext in COMPARE_WRITERS:
            paths.append(write_comparison(before, after, out / f"comparison{ext}", labels=("before", "after")))
    return paths


def _summary(out: Path, before, after, trained, n_adv: int, n_train: int, model_dir, *, held_out: bool = False,
             target: str = "target", objective: str = "robustness", extra: dict | None = None) -> Path:
    keys = summary_keys(before, after, objective)
    summary = {
        "objective": objective,
        "model_dir": str(model_dir) if model_dir else None,
        # True: trained on another split's attacks, the audited prompts were never trained on.
        "held_out": held_out,
        "target": target,   # what the perturbed prompts were trained towards: reference | target (own clean answer)
        "adversarial_examples": n_adv,
        "training_pairs": n_train,
        "steps": trained.steps if trained else 0,
        "best_val_loss": trained.best_val_loss if trained else None,
        # Kept under "robustness" for that objective (the key results.json readers know); "metrics" otherwise.
        ("robustness" if objective == "robustness" else "metrics"):
            {k: {"before": before.metrics.get(k), "after": after.metrics.get(k)} for k in keys},
        "passed_before": before.passed,
        "passed_after": after.passed,
        **(extra or {}),
    }
    path = out / "harden.json"
    atomic_write(path, json.dumps(json_safe(summary), indent=2) + "\n")
    return path
