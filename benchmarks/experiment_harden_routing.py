"""Typo robustness of a crisp task (issue 21, part B): which hardening makes a fine-tuned router's JSON answers
survive character attacks on messages it never saw, at equal training steps, against a plain-CE control?

1. Task model: SmolLM2-135M-Instruct LoRA-fine-tuned on the routing set's ``train`` messages
   (``audit finetune audit/suites/finetune-routing-smollm2.yaml``; built here when ``--task-model`` is missing).
   It answers ``{"topic", "order_number", "urgency"}`` as JSON, prompted by the suite's system prompt.
2. Every configuration starts from the task model and trains the SAME number of optimizer steps (LoRA r=16,
   batch 8), towards the references, on the train split only; every one is audited with the same suite
   (``routing-smollm2``) on the held-out TEST messages: clean accuracy (``quality.exact_match``) and the
   attack success rate (goal ``json_fields``: a field the clean answer got right becomes wrong) of DeepWordBug (the recipe
   attack-found training uses), Pruthi-style typos and invisible characters (never trained on by any).
3. Configurations (``--configs`` picks some):
   - ``task model (before)``: no training;
   - ``CE control``: the same steps on the clean train messages (more task training, no noise);
   - ``static augmentation``: clean + one fixed typo'd copy of every message (4 noise types mixed), CE;
   - ``online augmentation``: clean + a FRESH typo'd copy each time a slot is drawn (Ivgi & Berant 2021), CE;
   - ``online augmentation + KL``: the same plus the clean-vs-perturbed consistency KL (stability training);
   - ``attack-found prompts``: clean + DeepWordBug's successful attacks on the train split (``audit harden
     --train-split train --attack-recipe deepwordbug``), CE.
4. Prints the BENCHMARKS.md table: every rate with its Wilson 95% interval and n.

Run (from the repo root, 2 quiet cores):
    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/experiment_harden_routing.py
``--steps``, ``--lr``, ``--configs``, ``--examples`` and ``--out`` change the run; ``--gpu`` uses larger settings for a lent GPU
(every test message, 24 queries per attack, 400 steps, full fine-tuning).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from experiment_harden_safety import _cell, _task_model  # noqa: E402  (one table cell, one task-model rule)

SUITE = "routing-smollm2"
NOISE = ["char_swap", "char_delete", "char_insert", "qwerty"]
AUGMENT = {"transformations": NOISE, "per_prompt": 1, "pct_words_to_swap": 0.15}
CONFIGS = {
    "task model (before)": None,
    "CE control": {},
    "static augmentation": {"augment": AUGMENT},
    "online augmentation": {"augment": {**AUGMENT, "online": True}},
    "online augmentation + KL": {"augment": {**AUGMENT, "online": True}, "losses": {"ce": 1.0, "consistency": 1.0}},
    "attack-found prompts": {"attack": "deepwordbug"},
}
RECIPES = ["deepwordbug", "pruthi", "bad_characters"]
ROWS = [("clean accuracy (exact match)", "quality.exact_match")] + [
    (f"attack success, {r}{' (trained-on)' if r == 'deepwordbug' else ' (transfer)'}", f"robustness.attack_success_rate_{r}")
    for r in RECIPES]


def _train(lm, suite, opts: dict, ft: dict, out: Path, progress: bool):
    """Fine-tune a copy of the task model on the train messages as ``opts`` says; the TrainResult."""
    from audit.finetune import finetune
    from audit.models.local import LanguageModel

    cfg = {**ft, **{k: v for k, v in opts.items() if k != "attack"}, "data": str(suite.resolve_path(suite.data.path)),
           "format": "prompt_target", "prompt_field": "prompt", "target_field": "reference", "train_split": "train",
           "val_fraction": 0.0, "out_dir": str(out / "train"), "progress": progress, "seed": suite.seed}
    work = LanguageModel(copy.deepcopy(lm.model), lm.tokenizer, spec=lm.spec, path=lm.path, chat=lm.chat)
    return finetune(cfg, model=work)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task-model", default="runs/routing-smollm2/model")
    ap.add_argument("--out", default="runs/experiment_harden_routing")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--examples", type=int, default=300, help="test messages attacked per recipe")
    ap.add_argument("--lr", type=float, default=2e-4, help="learning rate of every trained configuration")
    ap.add_argument("--gpu", action="store_true", help="larger settings for a lent GPU")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    from audit.harden import harden, load_hardened
    from audit.models.local import LanguageModel
    from audit.runner import run_suite
    from audit.suite import load_suite

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    task = _task_model(Path(a.task_model), progress, "finetune-routing-smollm2.yaml")
    suite = load_suite(SUITE, model_override=str(task))
    rob = dataclasses.replace(suite.sections["robustness"], examples=a.examples)
    ft = {"lora": {"r": 16, "alpha": 32}, "max_steps": a.steps, "batch_size": 8, "lr": a.lr, "max_length": 256,
          "losses": {"ce": 1.0}, "augment": None, "save_every": 1000}
    if a.gpu:
        rob = dataclasses.replace(rob, examples=None, query_budget=24)
        ft = {**ft, "lora": None, "max_steps": max(a.steps, 400), "batch_size": 16, "lr": 2e-5}
    suite = dataclasses.replace(suite, sections={**suite.sections, "robustness": rob}, gates=[])
    lm = LanguageModel.load(suite.model)
    table, record = [], {}
    for name in a.configs:
        t0 = time.time()
        opts = CONFIGS[name]
        slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "plus")
        if opts is None:
            res, steps, counts = run_suite(suite, model=lm, out_dir=out / "before", progress=progress), 0, {}
        elif "attack" in opts:
            r = harden(lm, suite, out / slug, config={**ft, **{k: v for k, v in opts.items() if k != "attack"}},
                       target="reference", train_split="train", attack_recipes=[opts["attack"]], progress=progress)
            res, steps = r.after, (r.train.steps if r.train else 0)
            counts = {"adversarial": r.n_adversarial, "clean": r.n_train - r.n_adversarial}
        else:
            trained = _train(lm, suite, opts, ft, out / slug, progress)
            hardened = load_hardened(lm, trained.model_dir)
            res = run_suite(suite, model=hardened, out_dir=out / slug / "after", progress=progress)
            steps = trained.steps
            counts = json.loads((out / slug / "train" / "data.json").read_text())
        minutes = (time.time() - t0) / 60
        row = [name] + [_cell(res, k) for _, k in ROWS] + [_cell(res, "robustness.attack_success_rate"), str(steps),
                                                           f"{minutes:.1f}"]
        table.append(row)
        keys = [k for _, k in ROWS] + ["robustness.attack_success_rate", "quality.field_accuracy"]
        record[name] = {"metrics": {k: res.metrics.get(k) for k in keys}, "intervals": {k: res.intervals.get(k) for k in keys},
                        "steps": steps, "data": counts, "minutes": minutes}
        (out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
        print(" | ".join(row), flush=True)
    head = ["configuration"] + [t for t, _ in ROWS] + ["attack success, all recipes", "steps", "minutes"]
    md = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "".join("| " + " | ".join(r) + " |\n" for r in table)
    (out / "table.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
