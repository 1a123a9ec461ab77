"""Safety hardening of a real task model (issue 21, part A): does mixing safety examples into the fine-tune
restore the refusals that task fine-tuning erodes, on held-out probes, without raising over-refusal or
costing the task?

1. Task model: SmolLM2-135M-Instruct LoRA-fine-tuned on the support data's ``train`` questions
   (``audit finetune audit/suites/finetune-smollm2.yaml``; built here when ``--task-model`` is missing).
2. Every configuration starts from the task model, trains the SAME number of optimizer steps (LoRA r=8,
   batch 8, lr 3e-4) through ``audit harden --objective safety`` and is audited with the same suite
   (``harden-safety-smollm2``) on the TEST split only: 300 held-out harmful requests (stratified; one risk
   area, ``discrimination_toxicity``, never trained on in any configuration), 30 of them in each of the 8
   test-split jailbreak templates (never trained on: the training templates are the train split's), the
   26 test injection cases, the 91 test look-alikes, and the 51 support test questions (chrF, perplexity).
3. Configurations (``--configs`` picks some):
   - ``task model (before)``: no training;
   - ``task-data CE (control)``: the same steps on the task records only (more training, no safety data);
   - ``safety mix, ...``: refusals + jailbreak-wrapped refusals + the look-alikes' own answers + the task
     records, in the weights the name gives (the ``wrapped x3, look-alikes x2, task x3`` row is
     ``audit harden --objective safety``'s default);
   - ``default mix, no look-alikes``: without the harmless look-alikes (over-refusal is what they guard);
   - ``default mix, no wrapped``: without the jailbreak-wrapped copies (does refusal transfer to templates?).
4. Prints the BENCHMARKS.md table: every rate with its Wilson 95% interval and n; "held-out area" is the
   refusal rate on the area no configuration trained on.

Run (from the repo root, 2 cores): the default three (before, control, default mix) take ~60 min; every other
configuration ~25-40 min more (measured two side by side, one thread each, on a loaded box):
    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/experiment_harden_safety.py
``--steps``, ``--configs`` and ``--out`` change the run; ``--gpu`` uses larger settings for a lent GPU (every
test request, 64 per template, 400 steps, full fine-tuning instead of LoRA).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELD_OUT = "discrimination_toxicity"
#: Every mix names all four weights (the SafetyTraining defaults are the third row's: the best measured).
_OLD = {"harmful_limit": None, "wrapped_copies": 1, "benign_repeat": 1, "task_repeat": 1}
CONFIGS = {
    "task model (before)": None,
    "task-data CE (control)": {"refusals": False, "benign": False, "wrapped_copies": 0, "task_repeat": 3},
    "safety mix, every request": {**_OLD},
    "safety mix, 120 requests, task x3": {**_OLD, "harmful_limit": 120, "task_repeat": 3},
    "safety mix, 60 requests, task x3": {**_OLD, "harmful_limit": 60, "task_repeat": 3},
    "safety mix, 120 requests, wrapped x3, look-alikes x2, task x3": {"harmful_limit": 120, "wrapped_copies": 3,
                                                                    "benign_repeat": 2, "task_repeat": 3},
    "safety mix, 150 requests, wrapped x4, look-alikes x3, task x4": {"harmful_limit": 150, "wrapped_copies": 4,
                                                                     "benign_repeat": 3, "task_repeat": 4},
    "default mix, no look-alikes": {"benign": False},
    "default mix, no wrapped": {"wrapped_copies": 0},
}
DEFAULT_RUN = ["task model (before)", "task-data CE (control)",
               "safety mix, 120 requests, wrapped x3, look-alikes x2, task x3"]
ROWS = [("refusal (held-out requests)", "safety.refusal_rate"),
        ("held-out area", f"safety.refusal_rate.{HELD_OUT}"),
        ("jailbreak success (held-out templates)", "safety.jailbreak_success"),
        ("injection success", "safety.injection_success"),
        ("over-refusal (held-out look-alikes)", "safety.over_refusal_rate")]


def _cell(result, key: str) -> str:
    v = result.metrics.get(key)
    if v is None:
        return "n/a"
    ci = result.intervals.get(key)
    if ci and ci.get("low") is not None:
        return f"{v:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] n={ci.get('n', '?')}"
    return f"{v:.3f}"


def _task_model(path: Path, progress: bool, config: str = "finetune-smollm2.yaml") -> Path:
    """The task model at ``path``, fine-tuned first (bundled ``config``) when it is not there."""
    if (path / "config.json").exists():
        return path
    from audit.finetune import finetune
    from audit.finetune.config import load_finetune_config

    cfg = load_finetune_config(ROOT / "audit" / "suites" / config)
    cfg.out_dir = str(path.parent)
    cfg.progress = progress
    return Path(finetune(cfg).model_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task-model", default="runs/task-smollm2/model")
    ap.add_argument("--out", default="runs/experiment_harden_safety")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_RUN, choices=list(CONFIGS),
                    help="default: before, the control and the default mix (the table README shows)")
    ap.add_argument("--steps", type=int, default=180, help="optimizer steps of every trained configuration (the bundled config's; the tables before 2026-12-04 used 120)")
    ap.add_argument("--gpu", action="store_true", help="larger settings for a lent GPU")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    from audit.harden import harden
    from audit.models.local import LanguageModel
    from audit.runner import run_suite
    from audit.suite import load_suite

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    task = _task_model(Path(a.task_model), progress)
    suite = load_suite("harden-safety-smollm2", model_override=str(task))
    ft = {"lora": {"r": 8, "alpha": 16}, "max_steps": a.steps, "batch_size": 8, "lr": 3e-4, "max_length": 384}
    if a.gpu:
        import dataclasses

        sec = dataclasses.replace(suite.sections["safety"], harmful_limit=None, jailbreak_requests=64)
        suite = dataclasses.replace(suite, sections={**suite.sections, "safety": sec})
        ft = {"max_steps": max(a.steps, 400), "batch_size": 16, "lr": 2e-5, "max_length": 512}
    lm = LanguageModel.load(str(task))
    table, record = [], {}
    for name in a.configs:
        t0 = time.time()
        opts = CONFIGS[name]
        if opts is None:
            res = run_suite(suite, model=lm, out_dir=out / "before", progress=progress)
            steps, counts = 0, {}
        else:
            slug = name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            r = harden(lm, suite, out / slug, config=ft, train_split="train", objective="safety",
                       safety={"hold_out": [HELD_OUT], **opts}, progress=progress)
            res, steps, counts = r.after, r.train.steps, r.mix["counts"]
        minutes = (time.time() - t0) / 60
        row = [name] + [_cell(res, k) for _, k in ROWS] + [f"{res.metrics.get('quality.chrf', float('nan')):.1f}",
                                                            f"{res.metrics.get('quality.perplexity', float('nan')):.2f}",
                                                            str(steps), f"{minutes:.1f}"]
        table.append(row)
        record[name] = {"metrics": {k: res.metrics.get(k) for _, k in ROWS} | {
            "quality.chrf": res.metrics.get("quality.chrf"), "quality.perplexity": res.metrics.get("quality.perplexity")},
            "intervals": {k: res.intervals.get(k) for _, k in ROWS}, "steps": steps, "mix": counts, "minutes": minutes}
        (out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
        print(" | ".join(row), flush=True)
    head = ["configuration"] + [t for t, _ in ROWS] + ["task chrF", "task perplexity", "steps", "minutes"]
    md = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "".join("| " + " | ".join(r) + " |\n" for r in table)
    (out / "table.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
