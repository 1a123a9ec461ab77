"""On-disk caches for generations and scores, so interrupted runs resume and reruns reuse work.

Each cache is an append-only JSONL file (one ``{"k": key, "v": value}`` per line), flushed after
every batch: a run killed midway loses at most the batch in flight. A torn last line (killed while
writing) is ignored on load, and terminated before the next append so it cannot swallow the next
record; appends hold an exclusive ``flock`` so concurrent runs on one cache never interleave.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .paths import cache_dir


def make_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:32]


class DiskCache:
    """A JSONL-backed key/value store for one namespace (e.g. one model's generations).

    Example:
        >>> import tempfile; c = DiskCache(tempfile.mkdtemp(), "demo")
        >>> c.put_many([("a", 1)]); DiskCache(c.root, "demo").get("a")
        1
    """

    def __init__(self, root: str | os.PathLike | None, namespace: str, *, enabled: bool = True):
        self.root = Path(root) if root else cache_dir() / "runs"
        self.path = self.root / f"{namespace}.jsonl"
        self.enabled = enabled
        self._data: dict[str, Any] = {}
        if enabled and self.path.exists():
            # errors="replace": a write killed inside a multi-byte character must not make the whole file unreadable.
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                        self._data[obj["k"]] = obj["v"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a torn line from an interrupted write

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        items = list(items)
        for k, v in items:
            self._data[k] = v
        if not self.enabled or not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"k": k, "v": v}, ensure_ascii=False) + "\n" for k, v in items)
        with self.path.open("ab+") as f:
            _lock(f)
            try:
                if _ends_unterminated(f):
                    # A run killed mid-write left a torn last line: end it, or this batch's first record
                    # would be glued onto it and lost on every later load.
                    text = "\n" + text
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            finally:
                _unlock(f)


def _ends_unterminated(f) -> bool:
    """Whether the (append-mode, binary) file is non-empty and its last byte is not a newline."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return False
    f.seek(end - 1)
    last = f.read(1)
    f.seek(0, os.SEEK_END)
    return last != b"\n"


try:  # POSIX: an advisory lock between concurrent runs appending to one cache
    import fcntl

    def _lock(f) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)

    def _unlock(f) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
except ImportError:  # pragma: no cover - Windows: appends are small single writes
    def _lock(f) -> None:
        pass

    def _unlock(f) -> None:
        pass
