"""`accelerate launch -m audit run`: two gloo processes split the model's work and give one process's metrics."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = """name: dist
model: {model}
seed: 3
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 4}}
sections:
  quality: {{metrics: [perplexity, bleu, chrf, rouge_l]}}
  diversity: {{distinct: [1, 2]}}
  toxicity: {{scorer: profanity, generation: {{do_sample: true, num_samples: 3, top_p: 0.9, max_new_tokens: 6}}}}
  consistency: {{seed_samples: 2, examples: 6, generation: {{max_new_tokens: 6}}}}
  robustness: {{recipes: [deepwordbug], examples: 2, query_budget: 8, worst_case_examples: 4, generation: {{max_new_tokens: 6}}}}
gates:
  - quality.perplexity < 1e12
"""


def _run(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    return p


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)


@pytest.mark.slow
def test_two_process_audit_equals_one_process(micro_path, tmp_path):
    rows = [{"id": f"r{i}", "prompt": f"Customer: where is my order number {i} and the {['invoice', 'refund', 'parcel'][i % 3]}?\nAgent:",
             "reference": " It ships today."} for i in range(10)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(SUITE.format(model=micro_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    _run([sys.executable, "-m", "audit", "run", "suite.yaml", "--out", "one", "--cache-dir", "c1", "-q"], tmp_path, env)
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    two = _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "audit", "run", "suite.yaml", "--out", "two", "--cache-dir", "c2"], tmp_path, env)
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert _same(r1["metrics"], r2["metrics"]), {k: (r1["metrics"][k], r2["metrics"].get(k)) for k in r1["metrics"]}
    assert len(r1["metrics"]) > 15 and not any(s.get("error") for s in r2["sections"].values())
    s1 = (tmp_path / "one" / "samples.jsonl").read_text()
    assert s1 == (tmp_path / "two" / "samples.jsonl").read_text()
    # The work was split: rank 1 kept its own copy of the cache with every output, rank 0 the main one.
    main_cache = sorted((tmp_path / "c2").glob("gen-*.jsonl"))
    rank1_cache = sorted((tmp_path / "c2" / "rank1").glob("gen-*.jsonl"))
    assert main_cache and rank1_cache
    assert two.stdout.count("audit dist on") == 1   # one console summary (rank 0's)
    import re

    shares = re.findall(r"rank (\d) of 2: generated (\d+) of (\d+) outputs, scored (\d+) of (\d+)", two.stderr)
    assert sorted(s[0] for s in shares) == ["0", "1"], two.stderr[-2000:]
    (_, g0, n0, s0, p0), (_, g1, n1, s1_, p1) = sorted(shares)
    assert n0 == n1 and int(g0) + int(g1) == int(n0) and 0 < int(g1) < int(n0)   # each rank did part of the work
    assert p0 == p1 and int(s0) + int(s1_) == int(p0) and int(s1_) > 0
