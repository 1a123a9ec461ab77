"""Does hardening harden a real fine-tuned model? (issue 13) Held-out prompts, a transfer attack, CIs.

1. Task model: SmolLM2-135M-Instruct LoRA-fine-tuned (`audit finetune`, through its chat template) on
   the bundled support data's ``train`` split (``support_chat.jsonl``: user questions, agent answers).
2. Before: on held-out ``test``-split prompts (never trained on), measure
   - attack success of the TRAINING attack (deepwordbug) and of TRANSFER attacks never used in
     training (bad_characters, pruthi), all with the ``task_degradation`` goal: success = the
     answer's chrF similarity to the reference drops by more than ``margin`` below the clean answer's;
   - worst case over character-level perturbations from consistency (typos, whitespace,
     punctuation, lowercase): share of prompts where some perturbation degrades the answer the same way;
   - clean quality: chrF of greedy answers to the references (0-100) and perplexity of the references.
3. Training attacks: deepwordbug (task_degradation) on ``train``-split prompts of the task model; the
   successful perturbed prompts with CLEAN targets (the references) are the adversarial data.
   :func:`audit.harden.check_held_out` refuses any training prompt that is a test prompt
   or a perturbation of one.
4. Hardening configurations, each from the task model, all at the same optimizer steps and LoRA rank:
   clean CE only (control), augmentation, attack-found prompts, embedding PGD, SMART, consistency KL,
   and a combination. After each, the measurements of step 2 on the same held-out prompts.
5. Print the BENCHMARKS.md table: every rate with its Wilson 95% interval and n.

Run (from the repo root):
    OMP_NUM_THREADS=2 PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/experiment_harden_real.py [--gpu] [--pilot]
``--pilot`` proves the pipeline end to end in minutes (a few prompts, a few steps; numbers mean
nothing). The default settings ("cpu") run everything - task model, before, the 7 configurations - in
under 30 minutes on 2 quiet CPU cores (BENCHMARKS.md gives the measured time); ``--configs`` picks some.
``--gpu`` uses the larger settings meant for a lent H200 in under 10 minutes (not yet run: no session has
been lent one). ``--task-model DIR --n-test 51 --harden-steps 60 --configs ...`` is round 2 of
BENCHMARKS.md (the method changes: every test prompt, twice the steps, self-distilled targets); rounds 1
and 2 ran with the settings of commit 71ef972 (30 steps, both transfer attacks at 8 queries, FreeLB-style
PGD from a random start, generation batches of 16).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "audit" / "suites" / "data" / "support_chat.jsonl"
TRAIN_ATTACK = "deepwordbug"
PERTURBATIONS = ["typos", "whitespace", "punctuation", "lowercase"]   # character level, as consistency's INV set


@dataclass
class Settings:
    n_test: int              # held-out test prompts (of 51)
    n_train_attack: int      # train prompts attacked to build the adversarial data (of 182)
    task_steps: int          # LoRA steps of the task model
    harden_steps: int        # optimizer steps of EVERY hardening configuration
    lora_r: int
    max_length: int          # tokens per training example
    max_new_tokens: int      # answer length in every measurement
    query_budget: int        # model queries per attacked prompt, for the training attack
    transfer_budget: int     # model queries per attacked prompt, for each transfer attack
    batch_size: int          # training batch
    lr: float
    gen_batch: int = 16      # prompts per generation forward pass
    margin: float = 0.1      # task_degradation: chrF similarity points (0-1) the answer must lose
    device: str = "cpu"
    transfer: tuple[str, ...] = ("bad_characters", "pruthi")   # attacks never trained on


SETTINGS = {
    # 2 quiet CPU cores, the whole experiment (task model, before, 7 configurations) in under 30 minutes
    # (measured: BENCHMARKS.md). 30 held-out prompts (Wilson intervals about +-0.17); 24-token answers (the
    # references are ~30 tokens; chrF needs most of the answer); 12 queries per prompt for the training
    # attack (DeepWordBug ranks ~5 content words, then edits the top 1-2) and 6 for each transfer attack;
    # a 50-step task model; 14 hardening steps of 8 examples (0.6 epoch of the 182 train questions: the
    # budget's main cut; round 2 tried 60 steps without a different answer); 24 train prompts attacked
    # for attack-found data; batches of 32 prompts per generation pass (1.24x the throughput of 16 here).
    # Measuring takes ~1.8 min per model, training 0.9 (CE) to 3.2 (SMART) min per 20 steps.
    "cpu": Settings(n_test=30, n_train_attack=24, task_steps=50, harden_steps=14, lora_r=8, max_length=96,
                    max_new_tokens=24, query_budget=12, transfer_budget=6, batch_size=8, lr=3e-4, gen_batch=32),
    # a lent H200, < 10 min: every test prompt, more attack queries, longer training.
    "gpu": Settings(n_test=51, n_train_attack=182, task_steps=300, harden_steps=200, lora_r=16, max_length=192,
                    max_new_tokens=48, query_budget=40, transfer_budget=20, batch_size=32, lr=2e-4, gen_batch=64,
                    device="cuda"),
    # the plumbing only: minutes on a busy box, numbers meaningless.
    # (a small margin, so some attack succeeds and the attack-found-prompts path runs too).
    "pilot": Settings(n_test=4, n_train_attack=6, task_steps=3, harden_steps=2, lora_r=4, max_length=64,
                      max_new_tokens=10, query_budget=6, transfer_budget=4, batch_size=4, lr=3e-4, margin=0.02),
}


def rows(split: str) -> list[dict]:
    return [r for r in map(json.loads, DATA.read_text(encoding="utf-8").splitlines()) if r["split"] == split]


def rate(successes: int, n: int) -> dict:
    from audit.stats import wilson_interval

    lo, hi = wilson_interval(successes, n) if n else (math.nan, math.nan)
    return {"k": successes, "n": n, "rate": successes / n if n else math.nan, "low": lo, "high": hi}


def fmt_rate(r: dict) -> str:
    return "n/a (n=0)" if not r["n"] else f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}] n={r['n']}"


def attack(lm, records: list[dict], recipes: list[str], s: Settings, *, seed: int = 0):
    """task_degradation attacks of ``recipes`` on ``records`` (prompt + reference); records per recipe."""
    from audit.attacks import build_attack, check_data
    from audit.attacks.goals import make_goal
    from audit.attacks.run import Target, attack_lockstep
    from audit.attacks.wrapper import GenerationModelWrapper
    from audit.config import GenerationSettings

    for r in recipes:
        check_data(r)
    wrapper = GenerationModelWrapper(lm, GenerationSettings(max_new_tokens=s.max_new_tokens, batch_size=s.gen_batch), seed=seed)
    clean = wrapper([r["prompt"] for r in records])
    refs = {r["prompt"]: r["reference"] for r in records}
    targets = [Target(r["id"], r["prompt"], c, r["reference"]) for r, c in zip(records, clean)]

    def make(recipe):
        budget = s.query_budget if recipe == TRAIN_ATTACK else s.transfer_budget
        goal = make_goal("task_degradation", wrapper, query_budget=budget, references=refs, margin=s.margin)
        return build_attack(recipe, goal, protect=[])   # chat prompts: the whole text is the user's words

    return attack_lockstep(make, targets, recipes, seed=seed), wrapper, clean


def calibrate(lm, test: list[dict], s: Settings) -> dict:
    """How much the task metric moves between two answers the model itself finds plausible.

    Two samples per held-out prompt (temperature 0.7): |sim(a1, ref) - sim(a2, ref)| is the
    metric's "rewording noise"; a ``margin`` well above its median means a task_degradation success
    is a real loss of task quality, not a rewording. Also: how far greedy answers sit from the reference.
    """
    import statistics

    from audit.attacks.similarity import similarity
    from audit.config import GenerationSettings

    g = GenerationSettings(max_new_tokens=s.max_new_tokens, do_sample=True, temperature=0.7, num_samples=2,
                           batch_size=s.gen_batch)
    outs = lm.generate([r["prompt"] for r in test], g, seed=1)
    noise = sorted(abs(similarity(a, r["reference"]) - similarity(b, r["reference"])) for (a, b), r in zip(outs, test))
    q = lambda f: noise[min(len(noise) - 1, int(f * len(noise)))]  # noqa: E731
    return {"n": len(noise), "median": statistics.median(noise), "p75": q(0.75), "p90": q(0.9),
            "share_above_margin": sum(x > s.margin for x in noise) / len(noise), "margin": s.margin}


def answer_changes(clean: list[str], outs: list[str], test: list[dict], s: Settings) -> dict:
    """What the character perturbations do to the answers, over every (prompt, perturbation).

    ``outs[i * len(PERTURBATIONS) + j]`` answers perturbation j of prompt i. Returns the share of answers
    left word for word the same, and over the changed ones: the mean change of similarity to the
    reference (negative: worse) and the share that lose more than the margin.
    """
    from audit.attacks.similarity import similarity

    k = len(PERTURBATIONS)
    pairs = [(clean[i], outs[i * k + j], r["reference"]) for i, r in enumerate(test) for j in range(k)]
    changed = [similarity(o, ref) - similarity(c, ref) for c, o, ref in pairs if c != o]
    return {"unchanged_answers": 1 - len(changed) / len(pairs),
            "mean_change_when_changed": sum(changed) / len(changed) if changed else 0.0,
            "changed_beyond_margin": sum(x < -s.margin for x in changed) / len(changed) if changed else 0.0}


def diagnose(model_dirs: list[str], test: list[dict], s: Settings) -> dict:
    """:func:`answer_changes` of saved models (the task model, a configuration's ``model/``), greedy."""
    from audit.config import GenerationSettings
    from audit.models.local import LanguageModel
    from audit.perturb import perturb

    prompts = [r["prompt"] for r in test]
    variants = [perturb(p, q, seed=0) for p in prompts for q in PERTURBATIONS]
    g = GenerationSettings(max_new_tokens=s.max_new_tokens, batch_size=s.gen_batch)
    out = {}
    for d in model_dirs:
        lm = LanguageModel.load(d, device=s.device, dtype="float32")
        answers = [o[0] for o in lm.generate(prompts + variants, g)]
        out[d] = answer_changes(answers[:len(prompts)], answers[len(prompts):], test, s)
        print(d, json.dumps(out[d]), flush=True)
    return out


def evaluate(lm, test: list[dict], s: Settings) -> dict:
    """Every measurement of the table on the held-out prompts."""
    from audit.attacks.similarity import similarity
    from audit.metrics import sentence_chrf
    from audit.perturb import perturb

    t0 = time.time()
    by_recipe, wrapper, clean = attack(lm, test, [TRAIN_ATTACK, *s.transfer], s)
    out = {}
    broken: dict[str, bool] = {}   # per prompt: did ANY attack or perturbation degrade it (HELM's worst case)
    for recipe, recs in by_recipe.items():
        attacked = [r for r in recs if not r["skipped"]]
        out[recipe] = rate(sum(r["success"] for r in attacked), len(attacked))
        for r in attacked:
            broken[r["id"]] = broken.get(r["id"], False) or bool(r["success"])
    # Worst case over character-level perturbations, same criterion (and the same skip rule).
    variants = [[perturb(r["prompt"], p, seed=0) for p in PERTURBATIONS] for r in test]
    flat = [v for vs in variants for v in vs]
    outs = wrapper(flat)
    k = n = 0
    for i, r in enumerate(test):
        clean_sim = similarity(clean[i], r["reference"])
        if clean_sim <= s.margin:
            continue
        n += 1
        sims = [similarity(o, r["reference"]) for o in outs[i * len(PERTURBATIONS):(i + 1) * len(PERTURBATIONS)]]
        hit = any(clean_sim - x > s.margin for x in sims)
        k += hit
        broken[r["id"]] = broken.get(r["id"], False) or hit
    out["perturbations"] = rate(k, n)
    out.update(answer_changes(clean, outs, test, s))
    out["any"] = rate(sum(broken.values()), len(broken))
    out["chrf"] = sum(sentence_chrf(clean, [r["reference"] for r in test])) / len(test)
    out["clean_similarity"] = sum(similarity(c, r["reference"]) for c, r in zip(clean, test)) / len(test)
    ll = lm.loglikelihood([(r["prompt"], r["reference"]) for r in test], batch_size=s.gen_batch)
    out["perplexity"] = math.exp(-sum(x for x, _ in ll) / max(1, sum(t for _, t in ll)))
    out["eval_minutes"] = (time.time() - t0) / 60
    return out


def finetune_cfg(s: Settings, *, model: str, data: Path, out_dir: Path, steps: int, **extra) -> dict:
    return {"model": model, "data": str(data), "format": "prompt_target", "prompt_field": "prompt",
            "target_field": "reference", "lora": {"r": s.lora_r, "alpha": 2 * s.lora_r}, "max_steps": steps,
            "lr": s.lr, "batch_size": s.batch_size, "max_length": s.max_length, "val_fraction": 0.0, "warmup_steps": 0,
            "eval_every": 10 ** 6, "save_every": 10 ** 6, "keep_checkpoints": 1, "seed": 0, "progress": False,
            "out_dir": str(out_dir), **extra}


AUG = {"transformations": ["char_swap", "char_delete", "qwerty"], "per_prompt": 1, "pct_words_to_swap": 0.1}
# One PGD ascent step from zero (the FGM/PGD-1 form): its first direction comes off the clean pass, so it
# costs one forward fewer than FreeLB's random start (round 1 used init: uniform; both left attacks as they were).
PGD = {"weight": 1.0, "norm": "l2", "init": "zero", "epsilon": 1.0, "step_size": 1.0, "steps": 1}
CONFIGS = {
    "clean CE (control)": dict(losses={"ce": 1.0}),
    "augmentation": dict(losses={"ce": 1.0}, augment=AUG),
    "attack-found prompts": dict(losses={"ce": 1.0}, adversarial=True),
    "PGD": dict(losses={"ce": 1.0, "pgd": PGD}),
    "SMART": dict(losses={"ce": 1.0, "smart": 1.0}),
    "consistency KL (+aug)": dict(losses={"ce": 1.0, "consistency": 1.0}, augment=AUG),
    # the discrete-input pieces together (round 1's combination also had PGD: the same rates at 2.4x the cost)
    "combination": dict(losses={"ce": 1.0, "consistency": 1.0}, augment=AUG, adversarial=True),
    # Method changes after the first round (BENCHMARKS.md part C says why): typo'd copies of the train
    # prompts trained towards the task model's OWN greedy answer to the clean prompt (self-distillation:
    # the answer must not move, which is what task_degradation measures), alone and with the KL.
    "self-distilled augmentation": dict(losses={"ce": 1.0}, self_aug="augmented"),
    "self-distilled aug + consistency KL": dict(losses={"ce": 1.0, "consistency": 1.0}, self_aug="augmented"),
    # what `audit harden` trains on by default (target: the model's own clean output, clean prompts included)
    "self-distilled, clean too": dict(losses={"ce": 1.0}, self_aug="all"),
}


def self_augmented(lm, train: list[dict], s: Settings, path: Path, *, clean: str = "reference") -> Path:
    """Train records plus AUG-typo'd copies of each prompt whose target is the model's own clean greedy answer.

    ``clean``: the clean prompts' target, ``reference`` or ``own`` (the model's answer, as `audit harden` does).
    """
    from audit.config import GenerationSettings
    from audit.finetune.augment import augment_pairs
    from audit.finetune.config import AugmentOptions
    from audit.finetune.data import TextPair

    # Whole answers (they end at <|im_end|>), not the measurement's cut-off ones: a target cut at
    # max_new_tokens, then followed by the eos token, would teach the model to stop early.
    answers = [o[0] for o in lm.generate([r["prompt"] for r in train], GenerationSettings(
        max_new_tokens=64, batch_size=s.gen_batch))]
    own = {r["prompt"]: a.strip() for r, a in zip(train, answers)}
    aug = augment_pairs([TextPair(r["prompt"], own[r["prompt"]]) for r in train if own[r["prompt"]]],
                        AugmentOptions(**AUG), seed=0)
    recs = [{"prompt": r["prompt"], "reference": r["reference"] if clean == "reference" else own[r["prompt"]] or r["reference"]}
            for r in train]
    recs += [{"prompt": a.prompt, "reference": a.target, "original_prompt": a.meta["original_prompt"],
              "pair_target": a.target} for a in aug]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="the larger settings, on CUDA")
    ap.add_argument("--pilot", action="store_true", help="a few prompts and steps: the plumbing only")
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--out", default="runs/experiment_harden_real")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS)[:7], help="default: the first 7 (the issue's); "
                    "any of: " + ", ".join(CONFIGS))
    ap.add_argument("--task-model", help="reuse this task model directory (an earlier run's OUT/task/model) instead of training one")
    ap.add_argument("--n-test", type=int, help="override the settings' number of held-out test prompts")
    ap.add_argument("--harden-steps", type=int, help="override the settings' optimizer steps per configuration")
    ap.add_argument("--diagnose", nargs="+", metavar="MODEL_DIR", help="only measure what the character "
                    "perturbations do to these saved models' answers (unchanged share, change when changed)")
    args = ap.parse_args(argv)
    import torch

    from audit.finetune import finetune
    from audit.finetune.data import TextPair
    from audit.harden import check_held_out
    from audit.models.local import LanguageModel

    import dataclasses

    s = SETTINGS["pilot" if args.pilot else "gpu" if args.gpu else "cpu"]
    s = dataclasses.replace(s, **{k: v for k, v in (("n_test", args.n_test), ("harden_steps", args.harden_steps)) if v})
    if not args.gpu:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    train, test = rows("train"), rows("test")[:s.n_test]
    if args.diagnose:
        diagnose(args.diagnose, test, s)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    train_file = out / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")

    def load(path):
        return LanguageModel.load(str(path), device=s.device, dtype="float32")

    # 1. The task model.
    t0 = time.time()
    if args.task_model:
        task_dir, task_steps = Path(args.task_model), None
    else:
        task = finetune(finetune_cfg(s, model=args.model, data=train_file, out_dir=out / "task", steps=s.task_steps))
        task_dir, task_steps = task.model_dir, task.steps
    task_minutes = (time.time() - t0) / 60
    lm = load(task_dir)
    assert lm.chat is not None, "the task model lost its chat template"
    results = {"settings": s.__dict__, "task_model": {"steps": task_steps, "minutes": task_minutes, "dir": str(task_dir)}}
    print(f"task model: {task_steps} LoRA steps in {task_minutes:.1f} min -> {task_dir}", flush=True)

    # 2. Before.
    before = evaluate(lm, test, s)
    results["before"] = before
    print("before:", json.dumps(before), flush=True)
    results["calibration"] = calibrate(lm, test, s)
    print("margin calibration (rewording noise of the task metric):", json.dumps(results["calibration"]), flush=True)

    # 3. Attack-found training prompts (train split only), with clean targets (the references).
    adv: list[dict] = []
    adv_file = out / "adversarial.jsonl"
    if any(CONFIGS[name].get("adversarial") for name in args.configs):
        t0 = time.time()
        by_recipe, _, _ = attack(lm, train[:s.n_train_attack], [TRAIN_ATTACK], s)
        ref = {r["id"]: r["reference"] for r in train}
        adv = [{"prompt": r["perturbed_prompt"], "original_prompt": r["original_prompt"], "target": ref[r["id"]],
                "pair_target": ref[r["id"]], "recipe": TRAIN_ATTACK, "id": r["id"]}
               for r in by_recipe[TRAIN_ATTACK] if r["success"]]
        adv_file.write_text("".join(json.dumps(a) + "\n" for a in adv), encoding="utf-8")
        results["adversarial_train_prompts"] = len(adv)
        results["train_attack_minutes"] = (time.time() - t0) / 60
        print(f"attack-found training prompts: {len(adv)} of {min(len(train), s.n_train_attack)} attacked", flush=True)
    del lm
    test_prompts = [r["prompt"] for r in test]
    check_held_out([TextPair(r["prompt"], r["reference"]) for r in train]
                   + [TextPair(a["prompt"], a["target"], source="adversarial", meta=a) for a in adv], test_prompts)

    # 4. Every configuration from the task model at equal steps.
    results["configs"] = {}
    for name in args.configs:
        spec = dict(CONFIGS[name])
        use_adv = spec.pop("adversarial", False)
        self_aug = spec.pop("self_aug", False)
        if use_adv and not adv:
            print(f"{name}: skipped (no attack-found training prompt)", flush=True)
            continue
        t0 = time.time()
        data = train_file
        if self_aug:
            data = self_augmented(load(task_dir), train, s, out / "self_augmented.jsonl",
                                  clean="reference" if self_aug == "augmented" else "own")
            check_held_out([TextPair(r["prompt"], r["reference"]) for r in map(json.loads, data.read_text().splitlines())],
                           test_prompts)
        cfg = finetune_cfg(s, model=str(task_dir), data=data, out_dir=out / "configs" / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
                           steps=s.harden_steps, adversarial=[str(adv_file)] if use_adv else [], **spec)
        tr = finetune(cfg)
        train_minutes = (time.time() - t0) / 60
        after = evaluate(load(tr.model_dir), test, s)
        after.update(steps=tr.steps, train_minutes=train_minutes)
        results["configs"][name] = after
        print(f"{name}:", json.dumps(after), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")

    results["minutes"] = (time.time() - t_all) / 60
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(table(results))
    return 0


def table(results: dict) -> str:
    b = results["before"]
    transfers = results["settings"]["transfer"]
    head = (f"| configuration | {TRAIN_ATTACK} (trained on) success | transfer: {' / '.join(transfers)} | "
            f"char perturbations | any attack (worst case) | clean chrF | perplexity | steps | minutes |")
    lines = [head, "|" + "---|" * 9]

    def row(name, m, steps, minutes):
        transfer = " / ".join(fmt_rate(m[t]) for t in transfers)
        anyr = fmt_rate(m["any"]) if "any" in m else "-"
        return (f"| {name} | {fmt_rate(m[TRAIN_ATTACK])} | {transfer} | {fmt_rate(m['perturbations'])} | {anyr} | {m['chrf']:.1f} | "
                f"{m['perplexity']:.2f} | {steps} | {minutes:.1f} |")

    lines.append(row("task model (before)", b, 0, b["eval_minutes"]))
    for name, m in results["configs"].items():
        lines.append(row(name, m, m["steps"], m["train_minutes"] + m["eval_minutes"]))
    lines.append("")
    lines.append(f"goal: {TRAIN_ATTACK} success down >= 30% relative, before/after intervals disjoint, chrF and perplexity "
                 f"within 2% of the task model")
    for name, m in results["configs"].items():
        a, z = b[TRAIN_ATTACK], m[TRAIN_ATTACK]
        rel = (a["rate"] - z["rate"]) / a["rate"] if a["n"] and z["n"] and a["rate"] > 0 else math.nan
        disjoint = bool(a["n"] and z["n"] and (z["high"] < a["low"]))
        # within 2%: no more than 2% worse (a better chrF or a lower perplexity is kept quality)
        kept = m["chrf"] >= 0.98 * b["chrf"] and m["perplexity"] <= 1.02 * b["perplexity"]
        drop = "n/a (no success before)" if math.isnan(rel) else f"{rel:+.0%}"
        lines.append(f"- {name}: relative drop {drop}, intervals disjoint: {disjoint}, clean quality kept: {kept} "
                     f"-> {'MET' if rel >= 0.3 and disjoint and kept else 'not met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
