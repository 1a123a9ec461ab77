"""Two gloo processes (Accelerate MULTI_CPU) train data-parallel and end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_two_process_accelerate_run_ends_with_identical_weights(micro_path, tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    words = ["password", "order", "refund", "invoice", "account", "delivery"]
    rows = [{"prompt": f"Customer: where is my {words[i % 6]} number {i}?\nAgent:", "reference": f" Your {words[i % 6]} is on its way.",
             "split": "test" if i % 5 == 0 else "train"} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ft.yaml").write_text(
        f"model: {micro_path}\ndata: d.jsonl\ntrain_split: train\nval_split: test\nbatch_size: 4\nmax_steps: 6\n"
        f"eval_every: 3\nsave_every: 3\nlr: 0.002\nout_dir: out\nprogress: false\nlosses:\n  ce: 1.0\n  pgd: 0.5\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "audit", "finetune", "ft.yaml", "-q"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "out"
    # Each rank hashed its own weights at the end (written only when there are several processes).
    f0, f1 = (out / "fingerprint-rank0.txt").read_text(), (out / "fingerprint-rank1.txt").read_text()
    assert f0 == f1
    # Both ranks took part: each saved its RNG state in the checkpoint; one summary was printed.
    ck = out / "checkpoints" / "step-000006"
    assert (ck / "rng-rank0.pt").exists() and (ck / "rng-rank1.pt").exists()
    assert json.loads((ck / "trainer_state.json").read_text())["world_size"] == 2
    assert p.stdout.count("finetune: 6 steps") == 1
    # And the saved model is those weights.
    from audit.models.local import LanguageModel, params_fingerprint

    assert params_fingerprint(LanguageModel.load(str(out / "model")).model) == f0
