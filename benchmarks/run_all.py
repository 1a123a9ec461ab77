"""Run every benchmark script in turn (each prints its own ratio against a baseline measured in the
same run); `make bench`. The long fine-tuning experiment runs only with --all.

    python benchmarks/run_all.py [--all]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUICK = [
    ["bench_self_bleu.py"],
    ["bench_generation.py"],                                   # SmolLM2, chat template
    ["bench_generation.py", "--model", "builtin:tiny", "--prompts", "64", "--batch-size", "32"],
    ["bench_scorers.py", "--n", "1000"],
    ["bench_attacks.py"],
    ["bench_explain_vs_inseq.py", "--model", "builtin:tiny"],
    ["bench_trainer.py"],
    ["bench_tracking.py"],                                     # needs the tracking extra (mlflow, tensorboard)
    ["bench_fingerprint.py"],                                  # SmolLM2 directory, full-content hash
    ["gpu_check.py", "--tiny"],
]
LONG = [["experiment_finetune.py"]]


def main() -> int:
    runs = QUICK + (LONG if "--all" in sys.argv else [])
    failed = []
    for cmd in runs:
        print(f"\n=== {' '.join(cmd)} ===", flush=True)
        if subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]]) != 0:
            failed.append(cmd[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
