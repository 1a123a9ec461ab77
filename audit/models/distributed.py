"""Data-parallel audits: ``accelerate launch -m audit run SUITE`` splits the model's work across processes.

Every process runs the whole suite (evaluators are cheap and deterministic given the same model
outputs, so all ranks make the same calls in the same order); the model adapter is what is split.
:class:`DistributedModel` gives each rank every ``world_size``-th generation job or
likelihood pair, runs its share through the ordinary batched :class:`~audit.models.local.LanguageModel`
code, and all-gathers the results, so every rank holds every output and goes on identically. That
covers the main generation pass, the sections' own generations (toxicity, bias, consistency), the
attacks' queries (TextAttack asks the wrapper, the wrapper asks the model) and perplexity/likelihood
scoring. Rank 0 alone writes results and reports. Generation never depends on the batch (greedy is
per row; samples are seeded per (seed, prompt, index)), so metrics equal a one-process run's.

Processes exchange only Python objects (strings and floats), so the process group is gloo, on CPU
(``accelerate launch --multi_gpu`` without GPUs: MULTI_CPU) and on GPU nodes alike; with CUDA each
rank puts its model on ``cuda:LOCAL_RANK``.

Example:
    >>> world().size  # a plain `python -m audit` is one process
    1
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..config import GenerationSettings
from ..errors import AuditError, first_line
from ..io.paths import cache_dir as default_cache

log = logging.getLogger("audit")

# How long a rank waits for the others at a collective (gloo's own default is 30 minutes).
TIMEOUT_ENV = "AUDIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(AuditError):
    """A rank stopped progressing (or left): the collective timed out; the message names the rank."""


def collective_timeout() -> float:
    """Seconds a collective may wait for the other ranks: ``$AUDIT_DIST_TIMEOUT``, default 600."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r}: must be a positive number of seconds")
    return value


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from the launcher's environment (torchrun / accelerate launch set these)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(rank=int(os.environ.get("RANK", "0")), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup() -> World:
    """Join the process group (once) when launched with several processes; pick this rank's GPU."""
    w = world()
    if w.size == 1:
        return w
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        # Before the model loads: device "auto"/"cuda" then means this rank's own GPU.
        torch.cuda.set_device(w.local_rank)
    if not dist.is_initialized():
        from datetime import timedelta

        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=collective_timeout()))
    return w


def rank_cache_dir(cache_dir: str | os.PathLike | None, w: World) -> Path | None:
    """Rank 0 uses the cache as given; other ranks keep a copy of their own beside it.

    Every rank persists every output (all are gathered), so each copy holds the same entries and a
    rerun finds the same work done on every rank, which keeps their calls in step; no two
    processes ever append to one file.
    """
    if w.size == 1 or w.rank == 0:
        return Path(cache_dir) if cache_dir else None
    base = Path(cache_dir) if cache_dir else default_cache() / "runs"
    return base / f"rank{w.rank}"


def _gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``; a rank that does not arrive within :func:`collective_timeout` is named in the error."""
    from datetime import timedelta

    import torch.distributed as dist

    timeout = collective_timeout()
    try:
        # gloo's monitored barrier says which ranks did not arrive; all_gather_object alone only times out.
        # (A group someone else created with another backend, e.g. Accelerate's NCCL, keeps its own timeout.)
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=timeout), wait_all_ranks=True)
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
    except RuntimeError as e:
        raise DistributedError(f"rank {dist.get_rank()}: another rank stopped progressing: {first_line(e)} "
                               f"(waited {timeout:g} s; set {TIMEOUT_ENV} to wait longer)") from None
    return out


def distribute(lm):
    """``lm`` with generate/loglikelihood split across the process group (``lm`` itself when alone)."""
    w = world()
    if w.size == 1:
        return lm
    if not lm.has_weights:
        return lm   # a served model is already scaled out by its server; every rank would ask it the same
    return DistributedModel(lm, w)


def log_share(lm) -> None:
    """Log how much of the model's work this rank did (one line per rank, at the end of a run)."""
    st = getattr(lm, "dist_stats", None)
    if st is not None:
        log.info("rank %d of %d: generated %d of %d outputs, scored %d of %d likelihood pairs", lm.world.rank,
                 lm.world.size, st["generated"], st["jobs"], st["scored"], st["pairs"])


class DistributedModel:
    """A local model whose generate/loglikelihood are split across ranks and gathered.

    A wrapper, not a subclass: every other attribute (tokenizer, chat format, identity, the torch
    module) is the wrapped model's, read through ``__getattr__``, so the audit sees the same model.
    """

    def __init__(self, inner, w: World):
        self.inner = inner
        self.world = w
        self.dist_stats = {"generated": 0, "jobs": 0, "scored": 0, "pairs": 0}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def generate(self, prompts: Sequence[Any], settings=None, *, seed: int = 0, progress: bool = False,
                 on_batch: Callable[[list[tuple[int, int, str]]], None] | None = None,
                 skip: Iterable[tuple[int, int]] = (), desc: str = "generate") -> list[list[str]]:
        settings = settings or GenerationSettings()
        n = settings.num_samples
        # Work that every rank has cached stays skipped; the rest is split by job index.
        skips = _gather(sorted(set(skip)))
        common = set(map(tuple, skips[0])).intersection(*(set(map(tuple, s)) for s in skips[1:]))
        jobs = [(i, k) for i in range(len(prompts)) for k in range(n) if (i, k) not in common]
        mine = set(jobs[self.world.rank::self.world.size])
        local_skip = {j for j in jobs if j not in mine} | common
        part = self.inner.generate(prompts, settings, seed=seed, progress=progress, skip=local_skip, desc=desc)
        triples = [(i, k, part[i][k]) for i, k in sorted(mine)]
        self.dist_stats["generated"] += len(triples)
        self.dist_stats["jobs"] += len(jobs)
        out: list[list[str | None]] = [[None] * n for _ in prompts]
        gathered = [t for ts in _gather(triples) for t in ts]
        for i, k, text in gathered:
            out[i][k] = text
        if on_batch and gathered:
            on_batch(gathered)
        return out  # type: ignore[return-value]

    def loglikelihood(self, pairs, *, batch_size: int = 16, progress: bool = False):
        idx = list(range(self.world.rank, len(pairs), self.world.size))
        part = self.inner.loglikelihood([pairs[i] for i in idx], batch_size=batch_size, progress=progress)
        self.dist_stats["scored"] += len(idx)
        self.dist_stats["pairs"] += len(pairs)
        results: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        for chunk in _gather(list(zip(idx, part))):
            for i, v in chunk:
                results[i] = tuple(v)
        return results
