"""Issue 23, defects 2, 3 and 5: sharded weights in a subdirectory are fingerprinted, text typed by a user
never becomes chat control tokens, and `accelerate launch` keeps the exit-code contract and a timeout."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_suite


# ---- 2. the fingerprint covers shards in a subdirectory ------------------------------------------------------

def _sharded_into_subdir(src: Path, dst: Path) -> Path:
    """``src`` (a micro model) saved in ~30 KB shards, the shards moved to ``dst/shards`` and the index rewritten."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, safe_serialization=True, max_shard_size="30KB")
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    index_file = dst / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    (dst / "shards").mkdir()
    for name in set(index["weight_map"].values()):
        shutil.move(dst / name, dst / "shards" / name)
    index["weight_map"] = {k: f"shards/{v}" for k, v in index["weight_map"].items()}
    index_file.write_text(json.dumps(index))
    return dst


def test_defect2_a_shard_swapped_in_a_subdirectory_changes_the_fingerprint_and_the_cache(tmp_path, micro_path,
                                                                                          support_like, caplog):
    import torch
    from transformers import AutoModelForCausalLM

    from audit.models.builtin import build_micro
    from audit.models.fingerprint import fingerprint_path
    from audit.runner import run_suite

    d = _sharded_into_subdir(micro_path, tmp_path / "sharded")
    other = _sharded_into_subdir(build_micro(tmp_path / "other-src", seed=1), tmp_path / "other")
    shards = sorted((d / "shards").iterdir())
    assert len(shards) >= 3 and not list(d.glob("*.safetensors"))   # every weight lies in the subdirectory
    # transformers loads the subdirectory's shards: the weights equal the original model's.
    orig = AutoModelForCausalLM.from_pretrained(micro_path).state_dict()
    loaded = AutoModelForCausalLM.from_pretrained(d).state_dict()
    assert all(torch.equal(orig[k], loaded[k]) for k in orig)
    before = fingerprint_path(d)
    assert {f"shards/{s.name}" for s in shards} <= set(before.files) and "shards/" in before.covers

    suite = write_suite(tmp_path, "name: t\nseed: 0\ndata: {path: data.jsonl, limit: 3}\n"
                                  "generation: {max_new_tokens: 6, batch_size: 3}\nsections: {diversity: {}}\n")
    cache = tmp_path / "cache"
    run_suite(suite, model=str(d), progress=False, cache_dir=cache)
    # Swap one shard (the one holding the token embeddings) for the other model's.
    index = json.loads((d / "model.safetensors.index.json").read_text())
    swapped = index["weight_map"]["transformer.wte.weight"]
    shutil.copy(other / swapped, d / swapped)
    assert not torch.equal(AutoModelForCausalLM.from_pretrained(d).state_dict()["transformer.wte.weight"],
                           orig["transformer.wte.weight"])
    assert fingerprint_path(d).digest != before.digest
    with caplog.at_level(logging.INFO, logger="audit"):
        cached = run_suite(suite, model=str(d), out_dir=tmp_path / "out", progress=False, cache_dir=cache)
    assert "generation: 0 of 3 generations reused" in caplog.text, caplog.text
    fresh = run_suite(suite, model=str(d), progress=False, use_cache=False)
    assert [s.generations for s in cached.samples] == [s.generations for s in fresh.samples]
    covers = json.loads((tmp_path / "out" / "results.json").read_text())["model"]["fingerprint_covers"]
    assert swapped in covers


def test_defect2_an_index_entry_outside_the_model_directory_is_refused(tmp_path, micro_path):
    from audit.models.files import ModelLoadError, check_model_dir
    from audit.models.fingerprint import fingerprint_path

    d = _sharded_into_subdir(micro_path, tmp_path / "m")
    index_file = d / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    name = index["weight_map"]["transformer.wte.weight"]
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(d / name, outside)
    index["weight_map"]["transformer.wte.weight"] = "shards/../../elsewhere.safetensors"
    index_file.write_text(json.dumps(index))
    for check in (check_model_dir, fingerprint_path):
        with pytest.raises(ModelLoadError, match=r"model.safetensors.index.json: weight_map\['transformer.wte.weight'\] "
                                                 r"= 'shards/../../elsewhere.safetensors' lies outside the model directory"):
            check(d)
    index["weight_map"]["transformer.wte.weight"] = "shards/missing.safetensors"
    index_file.write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="names 'shards/missing.safetensors', which is not a file"):
        fingerprint_path(d)


# ---- 5. a stuck rank is named within a bounded time ------------------------------------------------------------

_STUCK = """
import os, sys, time
sys.path.insert(0, {root!r})
from audit.models import distributed
distributed.setup()
if distributed.world().rank == 1:
    time.sleep(120)   # stops progressing
    sys.exit(0)
try:
    distributed._gather("x")
except distributed.DistributedError as e:
    print("ERROR", e)
    sys.exit(2)
"""


def test_defect5_a_stuck_rank_fails_rank_0_within_the_timeout_naming_the_rank(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[1])
    (tmp_path / "stuck.py").write_text(_STUCK.format(root=root))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "AUDIT_DIST_TIMEOUT": "5", "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "stuck.py")], env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        out, err = procs[0].communicate(timeout=90)
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 2, err[-2000:]
    assert "ERROR rank 0: another rank stopped progressing" in out and "Ranks 1 failed to pass" in out, out
    assert elapsed < 60
