"""Served-model throughput and metrics: llama.cpp's server vs sequential requests, and vs local weights.

1. Throughput: the same greedy chat requests sent one after another by a bare loop (the baseline),
   then through ServedModel with 1, 4 and 8 requests in flight, all in one run against one server.
2. Metrics: one suite run on the local (dequantized) weights and through the server, side by side.

Needs the server venv (`make server`), or ``--url`` of a server already running that serves
SmolLM2-135M-Instruct as ``smollm2`` (e.g. vLLM: ``vllm serve DIR --served-model-name smollm2``). Run:
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_served.py [--prompts 16] [--tokens 32] [--threads 1] [--skip-metrics] [--url URL]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llama_server import LlamaServer, why_unavailable  # noqa: E402

SUITE = """name: served-vs-local
model: {model}
data: {{path: "audit:data/support_chat.jsonl", split: test, limit: {limit}}}
generation: {{max_new_tokens: 24}}
sections:
  quality: {{metrics: [perplexity, bleu, chrf, rouge_l]}}
  diversity: {{distinct: [1, 2, 3], repetition: [2, 3, 4]}}
  toxicity: {{scorer: profanity, limit: 12, generation: {{max_new_tokens: 16}}}}
"""


def questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "audit/suites/data/support_chat.jsonl").read_text().splitlines() if line.strip()]
    return [rows[i % len(rows)]["prompt"] for i in range(n)]


def bare_sequential(url: str, qs: list[str], tokens: int) -> float:
    t = time.perf_counter()
    for q in qs:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": tokens, "temperature": 0.0}
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            json.loads(r.read())
    return time.perf_counter() - t


def throughput(url: str, n: int, tokens: int, rounds: int = 2) -> list[tuple[str, float, float]]:
    """Best of ``rounds`` per mode, the modes' order reversed every round (a busy box drifts)."""
    from audit.config import GenerationSettings
    from audit.models.served import ServedModel, ServedSpec

    qs = questions(n)
    bare_sequential(url, qs[:2], tokens)   # warm-up (first request loads caches)

    def served(c: int) -> float:
        lm = ServedModel.load(ServedSpec(base_url=url, name="smollm2", concurrency=c))
        t = time.perf_counter()
        lm.generate(qs, GenerationSettings(max_new_tokens=tokens))
        return time.perf_counter() - t

    modes = [("sequential (bare loop)", lambda: bare_sequential(url, qs, tokens))] + \
            [(f"ServedModel, {c} in flight", lambda c=c: served(c)) for c in (1, 4, 8)]
    best: dict[str, float] = {}
    for r in range(rounds):
        for name, fn in (modes if r % 2 == 0 else modes[::-1]):
            best[name] = min(best.get(name, float("inf")), fn())
    base = best[modes[0][0]]
    return [(name, best[name], base / best[name]) for name, _ in modes]


def metrics_side_by_side(url: str, limit: int) -> tuple[dict, dict]:
    from audit import run_suite
    from test_served_llama import _local_dir

    local_dir = _local_dir()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in (("local", f'{{path: "{local_dir}", device: cpu, dtype: float32}}'),
                             ("served", f'{{provider: openai, base_url: "{url}", name: smollm2, concurrency: 4, tokenizer: "{local_dir}"}}')):
            p = Path(tmp) / f"{label}.yaml"
            p.write_text(SUITE.format(model=model, limit=limit))
            t = time.perf_counter()
            r = run_suite(str(p), out_dir=None, progress=False, use_cache=False)
            out[label] = (r.metrics, time.perf_counter() - t, {k: v.error for k, v in r.sections.items() if v.error})
    return out["local"], out["served"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--limit", type=int, default=8, help="records in the metrics suite")
    ap.add_argument("--skip-metrics", action="store_true")
    ap.add_argument("--url", help="a running server's base URL (…/v1) serving 'smollm2'; default: start llama.cpp's")
    args = ap.parse_args()
    import contextlib
    import types

    if not args.url:
        reason = why_unavailable()
        if reason:
            print(f"skip: {reason}")
            return 0
    import torch

    torch.set_num_threads(1)
    server = contextlib.nullcontext(types.SimpleNamespace(url=args.url)) if args.url else LlamaServer(n_threads=args.threads)
    with server as srv:
        what = args.url if args.url else f"llama.cpp server (llama-cpp-python 0.3.36, SmolLM2-135M-Instruct Q4_1, {args.threads} thread(s))"
        print(f"{what}; {args.prompts} greedy chat requests x {args.tokens} tokens")
        print(f"{'mode':<28}{'seconds':>9}{'req/s':>8}{'vs sequential':>15}")
        for name, sec, ratio in throughput(srv.url, args.prompts, args.tokens):
            print(f"{name:<28}{sec:>9.2f}{args.prompts / sec:>8.2f}{ratio:>14.2f}x")
        if not args.skip_metrics:
            (lm, lt, le), (sm, st, se) = metrics_side_by_side(srv.url, args.limit)
            served = f"served by {args.url}" if args.url else "served Q4_1"
            print(f"\nsuite metrics, local dequantized fp32 ({lt:.0f} s) vs {served} ({st:.0f} s), {args.limit} records:")
            for k in sorted(set(lm) | set(sm)):
                a, b = lm.get(k, math.nan), sm.get(k, math.nan)
                print(f"  {k:<40}{a:>10.4f}{b:>10.4f}")
            if le or se:
                print("section errors:", le, se)
    return 0


if __name__ == "__main__":
    sys.exit(main())
