"""On-disk caches for generations and scores, so interrupted runs resume and reruns reuse work.

Each cache is an append-only JSONL file (one ``{"k": key, "v": value}`` per line), flushed after
every batch: a run killed midway loses at most the batch in flight. A torn last line (killed while
writing) is ignored on load.
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
            with self.path.open(encoding="utf-8") as f:
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
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"k": k, "v": v}, ensure_ascii=False) + "\n" for k, v in items))
            f.flush()
            os.fsync(f.fileno())
