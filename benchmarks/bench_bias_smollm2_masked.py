"""Bias section on SmolLM2 without the main pass, with the suite's options (issue 26).

Run: python benchmarks/bench_bias_smollm2_masked.py TOKENS   (max_new_tokens of the continuations)
Writes /tmp/h5run/bias_TOKENS.json; BENCHMARKS.md records the figures.
"""
import dataclasses, json, sys, time
from audit.suite import load_suite
from audit.models.load import load_model
from audit.evaluators.base import Context
from audit.evaluators.bias import BiasEvaluator
from audit.evaluators import SECTIONS

tokens = int(sys.argv[1])
suite = load_suite("smollm2")
lm = load_model(suite.model)
sec = suite.sections["bias"]
opts = sec if isinstance(sec, BiasEvaluator.Options) else getattr(sec, "options", sec)
opts = dataclasses.replace(opts, generation={**opts.generation, "max_new_tokens": tokens}, pairs=None)
ctx = Context(model=lm, samples=[], settings=suite.generation, seed=suite.seed, base_dir=suite.base_dir, progress=True)
t = time.perf_counter()
res = BiasEvaluator(opts).evaluate(ctx)
print("seconds", round(time.perf_counter() - t, 1))
d = res.details
out = {"tokens": tokens, "metrics": res.metrics, "truncation": d.get("truncation"), "resolution": {k: v for k, v in d["resolution"].items()},
       "validity": {a: {"terms": v["terms"], **{m: {k: v[m][k] for k in ("gap", "gap_masked", "terms_gap", "sentences_gap")} for m in ("toxicity", "sentiment")}} for a, v in d["scorer_validity"].items()},
       "axes": {a: {m: {k: x[m].get(k) for k in ("gap", "gap_unmasked", "p_adjusted", "significant", "high", "low", "within_scorer_gap", "scorer_gap")} for m in ("toxicity", "sentiment")} for a, x in d["axes"].items()},
       "notes": d["gate_notes"], "warnings": d.get("warnings"), "n": len(res.records)}
import os; os.makedirs("/tmp/h5run", exist_ok=True); json.dump(out, open(f"/tmp/h5run/bias_{tokens}.json", "w"), indent=1, default=str)
print(json.dumps(out["axes"], indent=1, default=str))
