"""Experiment: do the losses do what their papers say, on the embedded model and the bundled task data?

    python benchmarks/experiment_finetune.py                       # builtin:tiny + audit/suites/data/support.jsonl
    python benchmarks/experiment_finetune.py --steps 150 --json exp.json

A. Unlikelihood vs CE-only at equal steps. Both runs start from the same model, see the same
   batches (same seed) for ``--steps`` steps on the ``train`` split; on the ``test`` split we measure
   greedy generations' rep-4 (share of repeated 4-grams within a generation, lower is better) and
   distinct-2 (corpus share of unique bigrams, higher is better), and the perplexity of the
   references given the prompts. Claim to check: unlikelihood lowers rep-4 and raises distinct-2
   at a perplexity within 10% of CE-only.

B. Hardening on held-out prompts. The robustness section attacks the model on the TRAIN prompts;
   the successful adversarial prompts (with the model's clean outputs as targets) plus the clean
   train prompts form the training set (the model is first CE-tuned on the train split for
   ``--base-steps``: hardening starts from a task model) (as ``audit harden`` builds it); the model is fine-tuned
   with each configuration of ``HARDEN_VARIANTS`` (``--variants``): ``ce + pgd`` towards the model's clean
   outputs (the original harden default) or the references, and ``ce`` on the references plus the
   paired ``consistency`` loss (KL from the clean-prompt to the perturbed-prompt next-token
   distributions along the model's clean output), optionally with TextAttack-augmented prompts as
   extra pairs. Attack success rate is then measured on the TEST prompts, which no training
   example came from, before vs after; clean quality (chrF of greedy outputs against references
   and reference perplexity) must stay within ``--tolerance``.

Everything it prints is measured in this run; effects that do not appear are reported as such.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch


def _suite(data: Path, split: str, *, robustness: bool, examples: int, budget: int, max_new_tokens: int) -> dict:
    sections = {"quality": {"metrics": ["perplexity", "chrf"]}}
    if robustness:
        sections["robustness"] = {"recipes": ["deepwordbug"], "examples": examples, "query_budget": budget,
                                  "perturbations": []}
    return {"name": f"exp-{split}", "model": "builtin:tiny", "seed": 0, "data": {"path": str(data), "split": split},
            "generation": {"max_new_tokens": max_new_tokens, "batch_size": 16}, "sections": sections}


def generation_metrics(lm, prompts, refs, max_new_tokens: int) -> dict:
    from audit.config import GenerationSettings
    from audit.metrics.distinct import distinct_n
    from audit.metrics.perplexity import perplexity
    from audit.metrics.repetition import rep_n

    gens = [g[0] for g in lm.generate(prompts, GenerationSettings(max_new_tokens=max_new_tokens, batch_size=16))]
    scored = lm.loglikelihood(list(zip(prompts, refs)))
    ppl = perplexity([-lp for lp, _ in scored], [n for _, n in scored])
    return {"rep_4": rep_n(gens, 4), "distinct_2": distinct_n(gens, 2), "perplexity": ppl,
            "mean_words": sum(len(g.split()) for g in gens) / len(gens), "example": gens[0][:160]}


def part_a(args, data: Path, work: Path) -> dict:
    from audit.data import load_records
    from audit.finetune import finetune
    from audit.models.local import LanguageModel

    test = load_records(data, split="test")
    prompts, refs = [r.prompt for r in test], [r.reference or "" for r in test]
    common = dict(model=args.model, data=str(data), train_split="train", val_fraction=0.0, max_steps=args.steps,
                  batch_size=8, lr=args.lr, warmup_steps=10, seed=0, progress=False, save_every=10_000,
                  eval_every=10_000, max_length=128)
    out = {"base": generation_metrics(LanguageModel.load(args.model), prompts, refs, args.gen_tokens)}
    for name, losses in (("ce", {"ce": 1.0}), ("ce+unlikelihood", {"ce": 1.0, "unlikelihood": args.ul_weight})):
        r = finetune({**common, "losses": losses, "out_dir": str(work / name.replace("+", "_"))})
        out[name] = generation_metrics(LanguageModel.load(str(r.model_dir)), prompts, refs, args.gen_tokens)
    ce, ul = out["ce"], out["ce+unlikelihood"]
    out["claims"] = {"rep_4_lower": ul["rep_4"] < ce["rep_4"], "distinct_2_higher": ul["distinct_2"] > ce["distinct_2"],
                     "perplexity_within_10pct": ul["perplexity"] <= 1.10 * ce["perplexity"],
                     "perplexity_ratio": ul["perplexity"] / ce["perplexity"]}
    return out


#: Part B's hardening configurations: name -> (training target, FinetuneConfig overrides). Every row
#: starts from the same task model and trains on the same successful attacks of the train prompts.
_AUG = {"transformations": ["char_swap", "char_delete", "char_insert", "qwerty"], "per_prompt": 2, "pct_words_to_swap": 0.2}
HARDEN_VARIANTS = {
    "ce+pgd/clean-output": ("target", {"losses": {"ce": 1.0, "pgd": 1.0}}),
    "ce+pgd/reference": ("reference", {"losses": {"ce": 1.0, "pgd": 1.0}}),
    "ce+consistency/reference": ("reference", {"losses": {"ce": 1.0, "consistency": 1.0}}),
    "ce+consistency5/reference": ("reference", {"losses": {"ce": 1.0, "consistency": 5.0}}),
    "ce+consistency5/reference+aug": ("reference", {"losses": {"ce": 1.0, "consistency": 5.0}, "augment": _AUG}),
}


def part_b(args, data: Path, work: Path) -> dict:
    from audit.suite import parse_suite
    from audit.finetune import finetune
    from audit.finetune.data import write_pairs_jsonl
    from audit.harden import HARDEN_DEFAULTS, training_pairs
    from audit.models.local import LanguageModel
    from audit.runner import run_suite

    kw = dict(budget=args.query_budget, max_new_tokens=args.attack_tokens)
    train_suite = parse_suite(_suite(data, "train", robustness=True, examples=args.attack_train_examples, **kw),
                              path=str(work / "train-suite.yaml"))
    test_raw = _suite(data, "test", robustness=True, examples=args.attack_examples, **kw)
    model_path = args.model
    if args.base_steps:
        # The realistic starting point: a task model (CE on the train split), then hardened.
        tuned = finetune({"model": args.model, "data": str(data), "train_split": "train", "val_fraction": 0.0,
                          "max_steps": args.base_steps, "batch_size": 8, "lr": args.lr, "warmup_steps": 10, "seed": 0,
                          "progress": False, "save_every": 10_000, "eval_every": 10_000, "max_length": 128,
                          "out_dir": str(work / "task-model")})
        model_path = str(tuned.model_dir)
    base = LanguageModel.load(model_path)
    attack_train = run_suite(train_suite, model=base, out_dir=work / "attack-train", progress=False)
    before = run_suite(parse_suite(test_raw, path=str(work / "t.yaml")), model=base, out_dir=work / "before-test", progress=False)
    keys = ["robustness.attack_success_rate", "quality.chrf", "quality.perplexity", "robustness.queries_per_example"]
    res: dict = {"start_model": "CE-tuned on train split for %d steps" % args.base_steps if args.base_steps else args.model,
                 "train_prompts_attacked": args.attack_train_examples, "test_prompts_attacked": args.attack_examples,
                 "before": {k: before.metrics.get(k) for k in keys}, "variants": {}}
    names = args.variants or list(HARDEN_VARIANTS)
    for name in names:
        target, overrides = HARDEN_VARIANTS[name]
        pairs, n_adv = training_pairs(attack_train, work / "attack-train" / "adversarial.jsonl", target=target)
        row: dict = {"training_target": target, **overrides, "adversarial_train_examples": n_adv,
                     "training_pairs": len(pairs)}
        res["variants"][name] = row
        if n_adv == 0:
            row["note"] = "no attack succeeded on the train prompts: nothing to harden"
            continue
        slug = name.replace("+", "_").replace("/", "-")
        train_file = write_pairs_jsonl(pairs, work / f"harden-train-{slug}.jsonl")
        cfg = {**HARDEN_DEFAULTS, "model": model_path, "data": str(train_file), "format": "prompt_target",
               "target_field": "target", "out_dir": str(work / f"hardened-{slug}"), "progress": False,
               "max_steps": args.harden_steps, "lr": args.harden_lr, "val_fraction": 0.0, "seed": 0, **overrides}
        trained = finetune(cfg)
        hardened = LanguageModel.load(str(trained.model_dir))
        after = run_suite(parse_suite(test_raw, path=str(work / "t.yaml")), model=hardened, out_dir=work / f"after-{slug}",
                          progress=False)
        row["after"] = {k: after.metrics.get(k) for k in keys}
        b, a = res["before"], row["after"]
        row["claims"] = {
            "asr_lower_on_held_out": a["robustness.attack_success_rate"] < b["robustness.attack_success_rate"],
            "chrf_within_tolerance": a["quality.chrf"] >= b["quality.chrf"] * (1 - args.tolerance),
            "perplexity_within_tolerance": a["quality.perplexity"] <= b["quality.perplexity"] * (1 + args.tolerance),
        }
        row["claims"]["all"] = all(row["claims"].values())
        print(f"B {name:32s} ASR {b['robustness.attack_success_rate']:.2f} -> {a['robustness.attack_success_rate']:.2f}  "
              f"chrF {b['quality.chrf']:.2f} -> {a['quality.chrf']:.2f}  "
              f"ppl {b['quality.perplexity']:.1f} -> {a['quality.perplexity']:.1f}  claims {row['claims']}", flush=True)
    res["tolerance"] = args.tolerance
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tiny")
    p.add_argument("--data", default=None, help="prompt/reference JSONL with split train/test (default: bundled support.jsonl)")
    p.add_argument("--steps", type=int, default=150, help="A: optimizer steps for both runs")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ul-weight", type=float, default=1.0, help="A: unlikelihood weight (alpha in the paper)")
    p.add_argument("--gen-tokens", type=int, default=48, help="A: greedy tokens per prompt (no stop string: repetition shows)")
    p.add_argument("--attack-examples", type=int, default=20, help="B: held-out test prompts attacked")
    p.add_argument("--attack-train-examples", type=int, default=20, help="B: train prompts attacked (their successes are trained on)")
    p.add_argument("--query-budget", type=int, default=40)
    p.add_argument("--attack-tokens", type=int, default=24)
    p.add_argument("--base-steps", type=int, default=150, help="B: CE-tune the model on the train split first (0: attack it as is)")
    p.add_argument("--variants", nargs="+", choices=sorted(HARDEN_VARIANTS), help="B: hardening rows to run (default: all)")
    p.add_argument("--harden-steps", type=int, default=120)
    p.add_argument("--harden-lr", type=float, default=3e-4)
    p.add_argument("--tolerance", type=float, default=0.10, help="B: allowed relative loss of clean quality")
    p.add_argument("--only", choices=["a", "b"])
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from audit.config import bundled_dir

    data = Path(args.data) if args.data else bundled_dir() / "data" / "support.jsonl"
    work = Path(tempfile.mkdtemp(prefix="exp-finetune-"))
    report = {"model": args.model, "data": str(data)}
    if args.only in (None, "a"):
        report["A_unlikelihood_vs_ce"] = part_a(args, data, work)
    if args.only in (None, "b"):
        report["B_hardening_held_out"] = part_b(args, data, work)
    print(json.dumps(report, indent=2, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
