"""Attack throughput: audit's lockstep search vs the previous per-example search vs one query at a time.

All runs attack the same prompts with the same recipes, goal, query budget and seeds; only the way
queries reach the model differs:

- ``naive``: stock TextAttack use: one example at a time, one prompt per forward pass, no
  run-wide cache (the goal function's per-example LRU stays on, as in TextAttack);
- ``previous``: audit before lockstep (kept here as the baseline): one example at a time, every
  uncached prompt of a TextAttack call generated together but batched only with prompts of equal
  token length, run-wide cache;
- ``lockstep``: audit now (:func:`audit.attacks.attack_lockstep`): every recipe x example attack
  runs in lockstep, so each search step's candidates from all attacks go to the model as one
  length-sorted, padded batch; run-wide cache.

Generation is batch-independent, so every run must produce identical attack records (checked;
exit 1 otherwise). Times are wall clock and CPU (process) time: on a shared box the CPU time is the
steadier figure.

Usage:
    python benchmarks/bench_attacks.py                                   # builtin:tiny, all three
    python benchmarks/bench_attacks.py --model /work/models/smollm2-hf --modes previous,lockstep
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
MODES = ("naive", "previous", "lockstep")


def load_prompts(n: int) -> tuple[list[str], str]:
    from audit.config import bundled_dir

    path = bundled_dir() / "data" / "support.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        prompts = [r["prompt"] for r in rows if r.get("split", "test") == "test"] or [r["prompt"] for r in rows]
        return prompts[:n], str(path)
    return (FALLBACK_PROMPTS * (n // len(FALLBACK_PROMPTS) + 1))[:n], "built-in fallback prompts"


def load_model(spec: str):
    from audit.models.local import LanguageModel, ModelLoadError

    try:
        return LanguageModel.load(spec), spec
    except (ModelLoadError, NotImplementedError) as e:
        if spec != "builtin:tiny":
            raise
        print(f"note: {spec} unavailable ({str(e).splitlines()[0]}); using builtin:micro", file=sys.stderr)
        return LanguageModel.load("builtin:micro"), "builtin:micro (fallback)"


def previous_wrapper_class():
    """The wrapper as it was before lockstep: generates a call's prompts in groups of equal token length."""
    from audit.attacks import GenerationModelWrapper

    class LengthBucketedWrapper(GenerationModelWrapper):
        def _generate(self, prompts):
            groups: dict[int, list[int]] = {}
            for i, p in enumerate(prompts):
                groups.setdefault(len(self.lm.encode(p)), []).append(i)
            out = [""] * len(prompts)
            for idx in groups.values():
                for i, text in zip(idx, super()._generate([prompts[i] for i in idx])):
                    out[i] = text
            return out

    return LengthBucketedWrapper


def run(mode: str, lm, prompts, settings, recipes, budget):
    from audit.attacks import GenerationModelWrapper, Target, attack_lockstep, attack_targets, build_attack, make_goal

    if mode == "naive":
        wrapper = GenerationModelWrapper(lm, settings, cache=False, batch_size=1)
    elif mode == "previous":
        wrapper = previous_wrapper_class()(lm, settings)
    else:
        wrapper = GenerationModelWrapper(lm, settings)

    def make_attack(name):
        return build_attack(name, make_goal("output_change", wrapper, query_budget=budget, max_similarity=0.5))

    t0, c0 = time.perf_counter(), time.process_time()
    clean = wrapper(prompts)
    targets = [Target(str(i), p, c) for i, (p, c) in enumerate(zip(prompts, clean))]
    if mode == "lockstep":
        by_recipe = attack_lockstep(make_attack, targets, recipes, seed=0)
        records = [r for name in recipes for r in by_recipe[name]]
    else:
        records = [r for name in recipes for r in attack_targets(make_attack(name), targets, recipe=name, seed=0)]
    return time.perf_counter() - t0, time.process_time() - c0, records, dict(wrapper.stats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tiny", help="builtin:tiny or a model directory (e.g. the SmolLM2 one)")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--recipes", default="deepwordbug,bad_characters")
    ap.add_argument("--modes", default=",".join(MODES), help="which of naive,previous,lockstep to run (first = baseline)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}")

    import torch

    from audit.attacks import import_textattack
    from audit.config import GenerationSettings

    torch.set_num_threads(args.threads)
    import_textattack()  # its import time is not part of any run
    lm, model_name = load_model(args.model)
    prompts, source = load_prompts(args.examples)
    # No stop at "\n": builtin:tiny opens its answers with a newline (every output would be empty).
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    recipes = args.recipes.split(",")
    n_attacks = len(prompts) * len(recipes)
    print(f"model {model_name}; {len(prompts)} prompts from {source}; recipes {', '.join(recipes)}; "
          f"query budget {args.budget}; max_new_tokens {args.max_new_tokens}; batch size {args.batch_size}; "
          f"torch threads {args.threads}")

    results = {}
    for mode in modes:
        results[mode] = run(mode, lm, prompts, settings, recipes, args.budget)
        wall, cpu, _, st = results[mode]
        print(f"{mode:>9}: {wall:8.2f} s wall {cpu:8.2f} s CPU  {n_attacks / wall:6.2f} attacks/s  "
              f"queries {st['queries']}, model passes asked {st['batches']}, generated {st['generated']}, "
              f"cache hits {st['cache_hits']}", flush=True)
    base = modes[0]
    same = all(results[m][2] == results[base][2] for m in modes)
    for mode in modes[1:]:
        print(f"speed-up {mode} vs {base}: {results[base][0] / results[mode][0]:.2f}x wall, "
              f"{results[base][1] / results[mode][1]:.2f}x CPU")
    succ = sum(r["success"] for r in results[modes[-1]][2])
    print(f"identical records: {same}; successful attacks: {succ}/{n_attacks}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
