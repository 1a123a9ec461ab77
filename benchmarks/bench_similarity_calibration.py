"""Which similarity measures an answer's meaning: the noise calibration of chrF, ROUGE-L and MiniLM embeddings (issue 22).

On SmolLM2-135M-Instruct through its chat template (the `smollm2` suite's model and its 51 test-split support
questions), three kinds of answer pairs:

- same prompt: two sampled answers to the same question (temperature 0.7, top_p 0.9: consistency's settings).
  A measure of meaning should call them alike; what it does not is its noise floor.
- typo: the greedy answer to the clean question vs to the question with consistency's `typos` perturbation (what
  robustness's worst case and INV compare).
- different prompts: the first sampled answer to question i vs to question j (every pair i < j): the answers a
  measure must call different.

For each measure: mean and quantiles per kind, ROC AUC of "same prompt" vs "different prompts" (the chance that a
random same-prompt pair scores above a random different-prompt pair; 0.5 = no separation) and the standardized gap
(difference of means over the pooled standard deviation). Then the timing of the suite's consistency and
robustness sections with `similarity: chrf` vs `embedding`, side by side in one process, no cache.

Run: python benchmarks/bench_similarity_calibration.py [--tokens 16 64] [--no-timing]
Prints markdown tables (BENCHMARKS.md, "Similarity: which measure separates...").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np

from audit.attacks.similarity import SIMILARITIES, prefetch, similarity
from audit.config import GenerationSettings
from audit.data import load_data
from audit.evaluators.base import Context, make_context
from audit.models.load import load_model
from audit.perturb import perturb
from audit.suite import load_suite


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a random positive > a random negative), ties half (Mann-Whitney U / (n_pos * n_neg))."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def describe(v: list[float]) -> dict:
    a = np.asarray(v)
    return {"n": int(a.size), "mean": float(a.mean()), "p10": float(np.quantile(a, 0.1)),
            "p50": float(np.quantile(a, 0.5)), "p90": float(np.quantile(a, 0.9)), "sd": float(a.std(ddof=1))}


def calibrate(lm, samples, tokens: int, seed: int) -> dict:
    prompts = [s.prompt for s in samples]
    sampled = GenerationSettings(max_new_tokens=tokens, do_sample=True, temperature=0.7, top_p=0.9, num_samples=2, batch_size=16)
    greedy = GenerationSettings(max_new_tokens=tokens, batch_size=16)
    ctx = Context(model=lm, samples=samples, settings=greedy, seed=seed, use_cache=False)
    two = ctx.generate(prompts, sampled, desc=f"samples ({tokens} tokens)")
    typo_prompts = [perturb(p, "typos", seed=seed) for p in prompts]
    outs = ctx.generate(prompts + typo_prompts, greedy, desc=f"greedy ({tokens} tokens)")
    clean, typo = [o[0] for o in outs[:len(prompts)]], [o[0] for o in outs[len(prompts):]]
    pairs = {
        "same prompt": [(g[0], g[1]) for g in two],
        "typo": [(c, t) for c, t, p, q in zip(clean, typo, prompts, typo_prompts) if p != q],
        "different prompts": [(two[i][0], two[j][0]) for i, j in itertools.combinations(range(len(two)), 2)],
    }
    out = {}
    for kind in SIMILARITIES:
        prefetch([t for ps in pairs.values() for pair in ps for t in pair], kind)
        t0 = time.perf_counter()
        scores = {k: [similarity(a, b, kind) for a, b in ps] for k, ps in pairs.items()}
        seconds = time.perf_counter() - t0
        same, diff = scores["same prompt"], scores["different prompts"]
        pooled = np.sqrt((np.var(same, ddof=1) + np.var(diff, ddof=1)) / 2)
        out[kind] = {"groups": {k: describe(v) for k, v in scores.items()}, "auc": auc(same, diff),
                     "std_gap": float((np.mean(same) - np.mean(diff)) / pooled), "score_seconds": seconds}
    return out


def time_sections(suite, lm, samples) -> dict:
    """Seconds of robustness then consistency (which reuses robustness's worst-case generations, as in a run)
    with each similarity, alternating, on a fresh context each time without the disk cache (generation included)."""
    from audit.evaluators import SECTIONS
    from audit.scorers.encoder import SentenceEncoder

    t0 = time.perf_counter()
    enc = SentenceEncoder.shared()   # once per process (the first embedding section pays it in a run)
    print(f"encoder load: {time.perf_counter() - t0:.1f} s", flush=True)
    spent = {"seconds": 0.0, "calls": 0, "texts": 0}
    real = enc.embed

    def timed(texts, **kw):   # how much of a section's time is the encoder's
        t0 = time.perf_counter()
        try:
            return real(texts, **kw)
        finally:
            spent["seconds"] += time.perf_counter() - t0
            spent["calls"] += 1
            spent["texts"] += len(texts)

    enc.embed = timed
    out = {}
    for kind in ("chrf", "embedding", "chrf", "embedding"):
        ctx = Context(model=lm, samples=samples, settings=suite.generation, seed=suite.seed, base_dir=suite.base_dir,
                      use_cache=False)
        rec = {}
        for name in ("robustness", "consistency"):
            opts = dataclasses.replace(suite.sections[name], similarity=kind)
            spent.update(seconds=0.0, calls=0, texts=0)
            cpu = time.process_time()
            res = SECTIONS.get(name)(opts).evaluate(ctx)
            rec[name] = res.seconds
            rec[f"{name}.cpu_seconds"] = time.process_time() - cpu   # less sensitive than wall time to other load
            rec.update({f"{name}.encoder_{k}": v for k, v in spent.items()})
            rec.update({f"{name}.{k}": v for k, v in res.metrics.items()})
        out.setdefault(kind, []).append(rec)
        print(kind, json.dumps({k: round(v, 3) for k, v in rec.items()}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="skip the calibration (the encoder then loads inside the first embedding run)")
    ap.add_argument("--json", default="/tmp/similarity_calibration.json")
    args = ap.parse_args()
    suite = load_suite("smollm2")
    lm = load_model(suite.model)
    # The suite's records as the run formats them (a 1-token main pass: only the prompts are needed here).
    samples = make_context(lm, load_data(suite.data, suite.base_dir), GenerationSettings(max_new_tokens=1)).samples
    results = {"calibration": {} if args.timing_only else {t: calibrate(lm, samples, t, suite.seed) for t in args.tokens}}
    for t, cal in results["calibration"].items():
        print(f"\n{len(samples)} questions, {t}-token answers\n")
        print("| measure | same prompt: mean [p10, p90] | typo: mean [p10, p90] | different prompts: mean [p10, p90] | AUC same vs different | standardized gap |")
        print("|---|---|---|---|---|---|")
        for kind, r in cal.items():
            g = r["groups"]
            cell = lambda k: f"{g[k]['mean']:.3f} [{g[k]['p10']:.3f}, {g[k]['p90']:.3f}]"  # noqa: E731
            print(f"| {kind} | {cell('same prompt')} | {cell('typo')} | {cell('different prompts')} | {r['auc']:.3f} | {r['std_gap']:.2f} |")
    if not args.no_timing:
        results["timing"] = time_sections(suite, lm, samples)
        print("\n| similarity | run | consistency s | robustness s | both s | of which the encoder |\n|---|---|---|---|---|---|")
        for kind, runs in results["timing"].items():
            for i, r in enumerate(runs):
                enc_s = r["consistency.encoder_seconds"] + r["robustness.encoder_seconds"]
                calls = r["consistency.encoder_calls"] + r["robustness.encoder_calls"]
                print(f"| {kind} | {i + 1} | {r['consistency']:.1f} | {r['robustness']:.1f} | {r['consistency'] + r['robustness']:.1f} | "
                      f"{enc_s:.1f} s in {calls} encoder calls |")
        for key, what in (("", "wall"), (".cpu_seconds", "CPU")):
            both = {k: np.mean([r[f"consistency{key}"] + r[f"robustness{key}"] for r in v]) for k, v in results["timing"].items()}
            print(f"embedding / chrf {what} time ratio (consistency + robustness, mean of 2 runs each): "
                  f"{both['embedding'] / both['chrf']:.2f}")
    json.dump(results, open(args.json, "w"), indent=1, default=str)
    print(f"\nfull results: {args.json}")


if __name__ == "__main__":
    main()
