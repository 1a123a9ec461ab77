"""Issue 12, security and correctness: each numbered defect reproduced as a hostile or careless user would.

Every test is named after its defect and fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import write_suite


class _RunsCode:
    """Pickles to a call of os.system: loading it with the full unpickler runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path, payload=lambda evil: evil) -> None:
    torch.save(payload(_RunsCode(marker)), path)


# ---- 1. no code runs from a file the package reads -------------------------------------------------------------

def test_defect1_detoxify_checkpoint_pickle_runs_no_code(tmp_path):
    from audit.scorers import ScorerError, get_scorer

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    _plant(ckpt, marker, lambda evil: {"config": evil, "state_dict": {}})
    with pytest.raises(ScorerError) as e:
        get_scorer("detoxify:original", checkpoint=str(ckpt))
    assert not marker.exists(), "loading the checkpoint ran the planted command"
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt) in msg and "could run code" in msg and "posix.system" in msg


def test_defect1_detoxify_config_is_read_as_data(tmp_path):
    """A checkpoint of plain data still may not steer detoxify to other transformers attributes or kwargs."""
    from audit.scorers import ScorerError, get_scorer
    from audit.scorers.testing import build_tiny_detoxify_checkpoint

    path, _, _ = build_tiny_detoxify_checkpoint(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["arch"]["args"]["model_name"] = "pipeline"
    torch.save(ckpt, tmp_path / "odd.ckpt")
    with pytest.raises(ScorerError, match=r"ForSequenceClassification model_name"):
        get_scorer("detoxify:original", checkpoint=str(tmp_path / "odd.ckpt"))


@pytest.fixture(scope="module")
def finetuned_checkpoint(tmp_path_factory, micro_path):
    """A real two-step fine-tuning run's checkpoint directory (optimizer, scheduler and RNG state files)."""
    from audit.finetune.run import finetune

    root = tmp_path_factory.mktemp("ft")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Customer: order {i}?\nAgent:", "reference": f" It ships {i}."}) + "\n"
                            for i in range(8)))
    cfg = {"model": str(micro_path), "data": str(data), "batch_size": 4, "lr": 1e-3, "max_steps": 2, "save_every": 2,
           "out_dir": str(root / "run"), "progress": False, "seed": 0}
    finetune(cfg)
    step = root / "run" / "checkpoints" / "step-000002"
    assert (step / "optimizer.pt").exists()
    return cfg, step


def test_defect1_resume_reads_rng_state_without_pickle(finetuned_checkpoint, tmp_path):
    """What this version writes resumes under weights_only (numpy's RNG state is stored as tensors)."""
    from audit.finetune.run import finetune

    cfg, step = finetuned_checkpoint
    copy = tmp_path / "ok"
    shutil.copytree(step, copy)
    for name in ("optimizer.pt", "scheduler.pt", "rng-rank0.pt"):
        torch.load(copy / name, weights_only=True)   # raises on anything but tensors and plain data
    r = finetune({**cfg, "max_steps": 3, "out_dir": str(tmp_path / "resumed"), "resume": str(copy)})
    assert r.steps == 3


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng-rank0.pt"])
def test_defect1_resume_checkpoint_pickle_runs_no_code(finetuned_checkpoint, tmp_path, name):
    from audit.finetune.checkpoint import CheckpointError
    from audit.finetune.run import finetune

    cfg, step = finetuned_checkpoint
    evil_dir = tmp_path / "step-000002"
    shutil.copytree(step, evil_dir)
    marker = tmp_path / "pwned"
    _plant(evil_dir / name, marker, lambda evil: {"state": evil})
    with pytest.raises(CheckpointError) as e:
        finetune({**cfg, "max_steps": 3, "out_dir": str(tmp_path / "out"), "resume": str(evil_dir)})
    assert not marker.exists(), f"resuming ran the command planted in {name}"
    assert "\n" not in str(e.value) and name in str(e.value) and "could run code" in str(e.value)


def test_defect1_no_full_unpickler_left_in_the_package():
    """Every torch.load goes through audit.tensor_files (weights_only=True); no pickle module use."""
    root = Path(__file__).resolve().parents[1] / "audit"
    offenders = []
    for py in root.rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        if py.name != "tensor_files.py" and ("torch.load(" in text or "weights_only=False" in text):
            offenders.append(str(py))
        if "import pickle" in text and py.name != "tensor_files.py":
            offenders.append(str(py))
    assert offenders == []
