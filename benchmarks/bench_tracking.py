"""Tracking overhead: an audit with and without ``--mlflow``, and fine-tuning steps with and without trackers.

    python benchmarks/bench_tracking.py [--rounds 5] [--steps 40]

1. The audit: builtin:tiny on the bundled support data (all 233 prompts, quality + diversity,
   32 greedy tokens, no cache), through ``run_suite`` three ways, interleaved round after round: no
   tracking (the baseline), a local SQLite store (``--mlflow DIR``), and a real ``mlflow server`` on
   127.0.0.1 (started here, SQLite backend). Each takes its minimum over rounds; the ratio and the extra
   seconds are against the baseline measured in the same run. ``import mlflow`` (paid once per
   process, the first tracked run's cost in a fresh ``audit run``) is timed apart, in a subprocess.
2. Fine-tuning: builtin:tiny, ``log_every: 1`` (every step is logged: the worst case), with no tracker,
   TensorBoard, MLflow (the server) and both. The per-step time is the median gap between consecutive
   step callbacks (the logging of a step happens inside that gap), so model loading and saving are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SUITE = f"""
name: bench-tracking
model: builtin:tiny
seed: 0
data: {{path: {ROOT / 'audit/suites/data/support.jsonl'}}}
generation: {{max_new_tokens: 32, batch_size: 16}}
sections:
  quality: {{metrics: [perplexity, bleu, chrf, rouge_l]}}
  diversity: {{distinct: [1, 2, 3], repetition: [2, 3, 4]}}
gates:
  - quality.perplexity < 1e9
  - diversity.distinct_1 >= 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/db.sqlite",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(f"mlflow server did not start on {url}")


def bench_audit(rounds: int, server: str, tmp: Path) -> dict:
    from audit.runner import run_suite

    suite = tmp / "suite.yaml"
    suite.write_text(SUITE)
    modes = {"none": False, "sqlite": {"mlflow": str(tmp / "store"), "experiment": "bench"},
             "server": {"mlflow": server, "experiment": "bench"}}
    run_suite(suite, out_dir=tmp / "warm", progress=False, use_cache=False, tracking=modes["sqlite"])   # build, import, migrate
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode, tracking in modes.items():
            t = time.perf_counter()
            run_suite(suite, out_dir=tmp / f"{mode}-{r}", progress=False, use_cache=False, tracking=tracking)
            times[mode].append(time.perf_counter() - t)
    best = {m: min(v) for m, v in times.items()}
    imp = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import mlflow; "
                          "from mlflow.tracking import MlflowClient; print(time.perf_counter() - t)"],
                         capture_output=True, text=True, check=True)
    return {"seconds": best, "all": times, "import_mlflow_s": float(imp.stdout.strip())}


def bench_finetune(steps: int, server: str, tmp: Path) -> dict:
    from audit.finetune.run import finetune

    data = ROOT / "audit/suites/data/support.jsonl"
    modes = {"none": {"tensorboard": False}, "tensorboard": {"report_to": ["tensorboard"]},
             "mlflow": {"report_to": ["mlflow"], "mlflow_uri": server}, "both": {"report_to": ["mlflow", "tensorboard"],
                                                                              "mlflow_uri": server}}
    out = {}
    for mode, extra in modes.items():
        stamps: list[float] = []
        finetune({"model": "builtin:tiny", "data": str(data), "train_split": "train", "val_fraction": 0.0,
                  "max_steps": steps, "batch_size": 8, "log_every": 1, "save_every": 10_000, "progress": False,
                  "out_dir": str(tmp / f"ft-{mode}"), "mlflow_experiment": "bench-ft", **extra},
                 callbacks=[lambda trainer, rec: stamps.append(time.perf_counter())])
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        out[mode] = statistics.median(gaps)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    proc, url = start_server(tmp / "server")
    try:
        audit = bench_audit(args.rounds, url, tmp)
        ft = bench_finetune(args.steps, url, tmp)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    s = audit["seconds"]
    print(f"audit (builtin:tiny, 233 prompts, quality + diversity, no cache; min of {args.rounds} rounds):")
    for mode in ("sqlite", "server"):
        print(f"  --mlflow {mode:7s} {s[mode]:7.2f} s vs {s['none']:.2f} s without: {s[mode] / s['none']:.3f}x, "
              f"+{s[mode] - s['none']:.2f} s")
    print(f"  import mlflow (once per process, fresh interpreter): {audit['import_mlflow_s']:.2f} s")
    print(f"finetune (builtin:tiny, batch 8, log_every 1; median step over {args.steps} steps):")
    for mode in ("tensorboard", "mlflow", "both"):
        print(f"  {mode:12s} {ft[mode] * 1000:7.1f} ms/step vs {ft['none'] * 1000:.1f} ms: {ft[mode] / ft['none']:.3f}x, "
              f"+{(ft[mode] - ft['none']) * 1000:.1f} ms")
    result = {"audit": audit, "finetune_step_s": ft}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
