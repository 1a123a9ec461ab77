"""Where audit keeps its caches (built models, converted checkpoints, generations)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of audit's cache: ``$AUDIT_CACHE`` or ``$XDG_CACHE_HOME/audit`` or ``~/.cache/audit``."""
    if os.environ.get("AUDIT_CACHE"):
        return Path(os.environ["AUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "audit"
