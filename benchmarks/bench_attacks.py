"""Attacks per second on the embedded model: audit's batched + cached wrapper vs a naive one.

Both runs attack the same prompts with the same recipes, goal, query budget and seeds; the only
difference is the TextAttack model wrapper:

- baseline: one prompt per forward pass and no run-wide cache (TextAttack's per-example LRU in the
  goal function stays on in both runs, as in stock TextAttack);
- audit: :class:`audit.attacks.GenerationModelWrapper` defaults: every uncached prompt of a
  TextAttack call generated in one batched pass, and a run-wide prompt -> output cache.

Generation is batch-independent, so both runs must produce identical attack records (checked).

Usage:
    python benchmarks/bench_attacks.py [--model builtin:tiny] [--examples 16] [--budget 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FALLBACK_PROMPTS = [
    "Customer: I do not know where my order is. Can you help?\nAgent:",
    "Customer: How do I reset my password?\nAgent:",
    "Customer: The application crashes whenever I open the settings page.\nAgent:",
    "Customer: Please cancel my subscription before the next renewal.\nAgent:",
    "Customer: I was charged twice for the same invoice this month.\nAgent:",
    "Customer: Can I change the shipping address of order 1234?\nAgent:",
    "Customer: My verification email never arrived, what should I do?\nAgent:",
    "Customer: Is there a discount for annual plans?\nAgent:",
]


def load_prompts(n: int) -> tuple[list[str], str]:
    from audit.config import bundled_dir

    path = bundled_dir() / "data" / "support.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        prompts = [r["prompt"] for r in rows if r.get("split", "test") == "test"] or [r["prompt"] for r in rows]
        return prompts[:n], str(path)
    return (FALLBACK_PROMPTS * (n // len(FALLBACK_PROMPTS) + 1))[:n], "built-in fallback prompts"


def load_model(spec: str):
    from audit.model import LanguageModel, ModelLoadError

    try:
        return LanguageModel.load(spec), spec
    except (ModelLoadError, NotImplementedError) as e:
        if spec != "builtin:tiny":
            raise
        print(f"note: {spec} unavailable ({str(e).splitlines()[0]}); using builtin:micro", file=sys.stderr)
        return LanguageModel.load("builtin:micro"), "builtin:micro (fallback)"


def run(lm, prompts, settings, recipes, budget, *, batched: bool):
    from audit.attacks import GenerationModelWrapper, Target, attack_targets, build_attack, make_goal

    wrapper = GenerationModelWrapper(lm, settings, cache=batched, batch_size=None if batched else 1)
    t0 = time.perf_counter()
    clean = wrapper(prompts)
    targets = [Target(str(i), p, c) for i, (p, c) in enumerate(zip(prompts, clean))]
    records = []
    for name in recipes:
        attack = build_attack(name, make_goal("output_change", wrapper, query_budget=budget, max_similarity=0.5))
        records += attack_targets(attack, targets, recipe=name, seed=0)
    return time.perf_counter() - t0, records, dict(wrapper.stats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--recipes", default="deepwordbug,bad_characters")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from audit.attacks import import_textattack
    from audit.config import GenerationSettings

    torch.set_num_threads(args.threads)
    import_textattack()  # its import time is not part of either run
    lm, model_name = load_model(args.model)
    prompts, source = load_prompts(args.examples)
    # No stop at "\n": builtin:tiny opens its answers with a newline (every output would be empty).
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=32)
    recipes = args.recipes.split(",")
    n_attacks = len(prompts) * len(recipes)
    print(f"model {model_name}; {len(prompts)} prompts from {source}; recipes {', '.join(recipes)}; "
          f"query budget {args.budget}; max_new_tokens {args.max_new_tokens}; torch threads {args.threads}")

    t_naive, rec_naive, st_naive = run(lm, prompts, settings, recipes, args.budget, batched=False)
    t_ours, rec_ours, st_ours = run(lm, prompts, settings, recipes, args.budget, batched=True)
    same = rec_naive == rec_ours
    succ = sum(r["success"] for r in rec_ours)
    print(f"baseline (1 prompt/pass, no run cache): {t_naive:7.2f} s  {n_attacks / t_naive:6.2f} attacks/s  "
          f"queries {st_naive['queries']}, generated {st_naive['generated']}")
    print(f"audit wrapper (batched + cached):      {t_ours:7.2f} s  {n_attacks / t_ours:6.2f} attacks/s  "
          f"queries {st_ours['queries']}, generated {st_ours['generated']}, cache hits {st_ours['cache_hits']}")
    print(f"speed-up: {t_naive / t_ours:.2f}x; identical records: {same}; successful attacks: {succ}/{n_attacks}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
