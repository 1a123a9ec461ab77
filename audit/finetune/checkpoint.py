"""Checkpoints that resume exactly: weights (safetensors), tokenizer, config, optimizer, scheduler,
every process's RNG state and the trainer's counters.

Layout of ``out_dir/checkpoints/step-000120/``::

    config.json, model.safetensors      the model (a plain transformers directory: loadable as is)
    adapter_config.json, adapter_model.safetensors   instead, for LoRA runs (adapter only)
    tokenizer files
    finetune.yaml                       the run's configuration
    trainer_state.json                  step, early-stopping state, data position
    optimizer.pt, scheduler.pt          AdamW moments and step counts, LR schedule position
    rng-rank0.pt, rng-rank1.pt, ...     python / numpy / torch (/ cuda) RNG states per process

A checkpoint is written into a temporary directory and renamed into place, so a crash never
leaves a half-written ``step-*`` directory that ``resume: auto`` would pick. Every directory written
here carries audit's marker (:mod:`audit.io.output_dirs`): only marked directories are ever removed,
older checkpoints without it are kept (and said so) rather than pruned.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..errors import AuditError, first_line
from ..io.output_dirs import is_owned, make_owned_dir, remove_owned_dir
from ..io.safe_yaml import load_yaml_file
from ..io.tensor_files import load_tensors

log = logging.getLogger("audit")

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(AuditError):
    """A checkpoint to resume from is missing or incomplete."""


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, ints and lists only, so resuming reads it with ``weights_only``.

    numpy's state holds an ndarray, which the weights-only unpickler refuses: its key is stored as an
    int64 tensor instead (MT19937 keys are uint32, so this is exact).
    """
    version, words, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {"python": [version, list(words), gauss],
             "numpy": {"bit_generator": np_state["bit_generator"],
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete ``step-N`` checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / STATE_FILE).exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest(root: Path) -> Path | None:
    dirs = step_dirs(root)
    return dirs[-1][1] if dirs else None


def save_model_files(model: torch.nn.Module, tokenizer, path: Path) -> None:
    """Weights as safetensors (an adapter only, for peft models) plus the tokenizer."""
    model.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint's weights into ``model`` in place (same architecture / adapter layout)."""
    from safetensors.torch import load_file, load_model

    if (path / "adapter_model.safetensors").exists():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        bad = [k for k in getattr(result, "unexpected_keys", []) or []]
        if bad:
            raise CheckpointError(f"{path}: adapter weights do not match this model ({bad[0]} ...)")
        return
    file = path / "model.safetensors"
    if not file.exists():
        raise CheckpointError(f"{path}: no model.safetensors or adapter_model.safetensors")
    # strict=False: a tied output head is stored once; load_model re-ties shared tensors itself.
    missing, unexpected = load_model(model, str(file), strict=False)
    if unexpected or any(not _is_tied(model, k) for k in missing):
        raise CheckpointError(f"{path}: weights do not match this model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def holds_weights_of(model: torch.nn.Module, path: Path) -> bool:
    """True when checkpoint ``path`` stores exactly ``model``'s current (trainable) weights."""
    from safetensors.torch import load_file

    if (path / "adapter_model.safetensors").exists():
        from peft import get_peft_model_state_dict

        saved, current = load_file(str(path / "adapter_model.safetensors")), get_peft_model_state_dict(model)
    elif (path / "model.safetensors").exists():
        saved, current = load_file(str(path / "model.safetensors")), model.state_dict()
    else:
        return False
    return all(k in current and torch.equal(v, current[k].detach().cpu()) for k, v in saved.items())


def _is_tied(model: torch.nn.Module, key: str) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    p = params.get(key)
    return p is not None and any(q is p for k, q in params.items() if k != key)


def write_checkpoint(root: Path, step: int, *, model: torch.nn.Module, tokenizer, optimizer, scheduler,
                     state: dict[str, Any], config: dict[str, Any], accelerator, keep: int) -> Path:
    """Write ``root/step-{step}`` from every process (collective: all ranks must call it)."""
    target = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if accelerator.is_main_process:
        remove_owned_dir(tmp, what="checkpoint being written")   # a crashed run's leftover
        make_owned_dir(tmp)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model_files(model, tokenizer, tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "finetune.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step, "world_size": accelerator.num_processes}, indent=2),
                                      encoding="utf-8")
        remove_owned_dir(target, what="checkpoint")
        tmp.rename(target)
        for _, old in step_dirs(root)[:-keep]:
            if is_owned(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                log.warning("finetune: keeping %s: audit did not mark it as its own, so it is never removed", old)
    accelerator.wait_for_everyone()
    return target


def config_diff(path: Path, config: dict[str, Any], fields: tuple[str, ...]) -> str:
    """``field=saved (this run: value)`` for each of ``fields`` where the checkpoint's config differs."""
    try:
        saved = load_yaml_file(path / "finetune.yaml", what="saved finetune config", error=AuditError) or {}
    except AuditError:
        return ""
    return ", ".join(f"{k}={saved.get(k)!r} (this run: {config.get(k)!r})" for k in fields
                     if k in saved and saved.get(k) != config.get(k))


def read_checkpoint(path: Path, *, model: torch.nn.Module, optimizer, scheduler, accelerator) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this process's RNG; return the trainer state."""
    if not (path / STATE_FILE).exists():
        raise CheckpointError(f"{path}: not a checkpoint (no {STATE_FILE})")
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("world_size", 1) != accelerator.num_processes:
        raise CheckpointError(f"{path}: saved with {state.get('world_size')} processes, resuming with "
                              f"{accelerator.num_processes}; exact resume needs the same number")
    load_model_weights(model, path)
    # A checkpoint directory is input too (copied from elsewhere, shared): tensors and plain data only.
    optimizer.load_state_dict(load_tensors(path / "optimizer.pt", error=CheckpointError, what="optimizer state"))
    scheduler.load_state_dict(load_tensors(path / "scheduler.pt", error=CheckpointError, what="scheduler state"))
    rng_file = path / f"rng-rank{accelerator.process_index}.pt"
    if not rng_file.exists():
        raise CheckpointError(f"{path}: {rng_file.name} missing")
    try:
        rng = load_tensors(rng_file, error=CheckpointError, what="RNG state")
    except CheckpointError as e:
        if "numpy" not in str(e):
            raise
        # Checkpoints written before RNG states were stored as tensors hold a pickled numpy array.
        raise CheckpointError(f"{e}; it was written by an older audit (numpy RNG state pickled): resume from a "
                              f"checkpoint this version wrote, or start the run again") from None
    try:
        set_rng_state(rng)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{rng_file}: not an RNG state this version writes ({type(e).__name__}: "
                              f"{first_line(e, default='')}); resume from a checkpoint written by this version") from None
    return state
