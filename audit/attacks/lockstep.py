"""Run many attacks in lockstep so their model queries go to the model as one batch.

A TextAttack search is sequential: it asks the model about a word's few candidates, reads the
scores, then decides what to ask next. Attacked one example at a time, a generation model sees
batches of 1-20 prompts, far too small to use a CPU or GPU well (a 135M model decodes ~10x more
prompts per second at batch 16 than at batch 1). Rewriting every TextAttack search method as a
step-wise coroutine would fork TextAttack; instead each attack runs unchanged on its own thread,
and the threads take turns:

- only one attack runs Python at any time (it holds the turn); the others are parked;
- when an attack queries the model it parks: its request is recorded and the turn passes on;
- once every live attack is parked (or finished), all requests are answered with ONE call
  (``answer(prompts)``, every attack's prompts one after another), and every
  attack is resumed in a fixed order, one at a time, until it parks again.

Each attack's random state (Python's, NumPy's and torch's global RNGs, which TextAttack's random
transformations draw from) is saved when it parks and restored when it resumes, and the attacks
run in a fixed order, so every attack takes exactly the path it takes when run alone: with a
batch-independent model the records are the same, only the batches are larger.

Example:
    >>> asked = []
    >>> def upper(prompts):
    ...     asked.append(len(prompts))
    ...     return [p.upper() for p in prompts]
    >>> run_lockstep([lambda: request(upper, ["a", "b"]), lambda: request(upper, ["c"])])
    [['A', 'B'], ['C']]
    >>> asked  # one call for both attacks
    [3]
"""

from __future__ import annotations

import random
import threading
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
Answer = Callable[[list[str]], list[str]]

_local = threading.local()
_MAIN = -1


class _Cancelled(BaseException):
    """Raised inside a parked attack when another attack failed: unwinds it without a result."""


def _rng_state():
    import numpy as np
    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_state(state) -> None:
    import numpy as np
    import torch

    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


def in_lockstep() -> bool:
    """Whether the calling thread is an attack run by :func:`run_lockstep`."""
    return getattr(_local, "scheduler", None) is not None


def request(answer: Answer, prompts: Sequence[str]) -> list[str]:
    """``answer(prompts)``, batched with every other attack's request when run in lockstep.

    Outside :func:`run_lockstep` this is just ``answer(list(prompts))``.
    """
    sched = getattr(_local, "scheduler", None)
    if sched is None:
        return answer(list(prompts))
    return sched._park(_local.job, answer, list(prompts))


class _Scheduler:
    def __init__(self, n: int):
        self.cv = threading.Condition()
        self.turn = _MAIN
        self.pending: dict[int, tuple[Answer, list[str]]] = {}
        self.replies: dict[int, object] = {}
        self.results: list = [None] * n
        self.errors: dict[int, BaseException] = {}
        self.finished: set[int] = set()

    # ---- called on an attack's thread --------------------------------------------------------
    def _park(self, job: int, answer: Answer, prompts: list[str]) -> list[str]:
        state = _rng_state()
        with self.cv:
            self.pending[job] = (answer, prompts)
            self._pass_to(_MAIN)
            self.cv.wait_for(lambda: self.turn == job)
            reply = self.replies.pop(job)
        _set_rng_state(state)
        if reply is _Cancelled:
            raise _Cancelled()
        return reply  # type: ignore[return-value]

    def _body(self, job: int, fn: Callable[[], T]) -> None:
        _local.scheduler, _local.job = self, job
        with self.cv:
            self.cv.wait_for(lambda: self.turn == job)
        try:
            self.results[job] = fn()
        except _Cancelled:
            pass
        except BaseException as e:  # handed to the caller of run_lockstep
            self.errors[job] = e
        finally:
            _local.scheduler = None
            with self.cv:
                self.finished.add(job)
                self._pass_to(_MAIN)

    # ---- called on the caller's thread -------------------------------------------------------
    def _pass_to(self, who: int) -> None:
        self.turn = who
        self.cv.notify_all()

    def _run_turn(self, job: int) -> None:
        """Let ``job`` run until it parks or finishes."""
        with self.cv:
            self._pass_to(job)
            self.cv.wait_for(lambda: self.turn == _MAIN)

    def _answer_all(self) -> None:
        """Answer every parked request: one ``answer`` call per distinct answer function."""
        # Keyed by the function itself: bound methods of one object compare (and hash) equal,
        # though each attribute access makes a new method object. The answer function sees every
        # prompt asked (repeats included) and does its own de-duplication and cache accounting.
        groups: dict[Answer, list[int]] = {}
        for job in sorted(self.pending):
            groups.setdefault(self.pending[job][0], []).append(job)
        for answer, jobs in groups.items():
            flat = [p for job in jobs for p in self.pending[job][1]]
            outs = answer(flat)
            at = 0
            for job in jobs:
                n = len(self.pending[job][1])
                self.replies[job] = list(outs[at:at + n])
                at += n


def run_lockstep(jobs: Sequence[Callable[[], T]], *, on_finish: Callable[[int, T], None] | None = None) -> list[T]:
    """Run ``jobs`` (callables without arguments) in lockstep; return their results in order.

    Inside a job, :func:`request` parks until every other live job has parked or finished, then
    all requests are answered together. A job's exception is raised here once the others have
    been unwound (the first failing job's, in job order). ``on_finish(index, result)`` is called
    on this thread as each job finishes (e.g. to advance a progress bar).

    Example:
        >>> run_lockstep([lambda: 1, lambda: 2])
        [1, 2]
    """
    if in_lockstep():
        raise RuntimeError("run_lockstep cannot be nested")
    n = len(jobs)
    sched = _Scheduler(n)
    threads = [threading.Thread(target=sched._body, args=(j, fn), daemon=True, name=f"lockstep-{j}")
               for j, fn in enumerate(jobs)]
    outer = _rng_state()   # the jobs seed their own RNGs; the caller's state is given back after
    reported: set[int] = set()
    try:
        for t in threads:
            t.start()
        live = list(range(n))
        while live:
            for job in live:
                sched._run_turn(job)
            for job in sorted(sched.finished - reported):
                reported.add(job)
                if on_finish and job not in sched.errors:
                    on_finish(job, sched.results[job])
            if sched.errors:
                break
            live = sorted(sched.pending)
            if live:
                sched._answer_all()
                sched.pending.clear()
    finally:
        # Unwind attacks still parked (after an error, or an interrupt on this thread), once the
        # attack holding the turn (if any) has parked or finished.
        with sched.cv:
            sched.cv.wait_for(lambda: sched.turn == _MAIN, timeout=60)
        for job in sorted(sched.pending):
            sched.replies[job] = _Cancelled
            sched.pending.pop(job)
            sched._run_turn(job)
        for t in threads:
            t.join(timeout=5)
        _set_rng_state(outer)
    if sched.errors:
        raise sched.errors[min(sched.errors)]
    return sched.results
