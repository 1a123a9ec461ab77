"""Where an audit is tracked: the suite's ``tracking:`` block, with the CLI's flags over it.

Example:
    >>> s = TrackingSettings(mlflow=True, experiment="nightly")
    >>> s.merged({"mlflow": "http://127.0.0.1:5000", "experiment": None}).mlflow
    'http://127.0.0.1:5000'
    >>> TrackingSettings(mlflow="http://h:5000").merged({"mlflow": True}).mlflow   # --mlflow alone keeps the suite's URI
    'http://h:5000'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrackingSettings:
    """``tracking: {mlflow: URI-or-true, experiment: NAME, run_name: NAME, tags: {...}}`` in a suite."""

    mlflow: bool | str | None = None     # true: the default local store (./mlruns); a URI (http://, sqlite:///) or a directory
    experiment: str | None = None        # MLflow experiment (default: the suite's name)
    run_name: str | None = None          # the run's name (default: "<suite> <model>")
    tags: dict[str, Any] = field(default_factory=dict)   # extra run tags (strings, numbers, booleans)

    def __post_init__(self):
        if isinstance(self.mlflow, str) and not self.mlflow.strip():
            raise ValueError("mlflow: give a tracking URI, a directory, or true (the default local store)")
        for name in ("experiment", "run_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
        for k, v in self.tags.items():
            if not isinstance(k, str) or not k or isinstance(v, (list, dict)) or v is None:
                raise ValueError(f"tags.{k}: expected a name and a string, number or boolean value, got {v!r}")

    @property
    def enabled(self) -> bool:
        return self.mlflow not in (None, False)

    def merged(self, overrides: dict[str, Any] | None) -> "TrackingSettings":
        """These settings with every override that is not None applied (tags are added to, not replaced)."""
        if not overrides:
            return self
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.get("mlflow") is True and isinstance(self.mlflow, str):
            del given["mlflow"]   # `--mlflow` alone turns tracking on: a URI the suite names still says where
        if "tags" in given:
            given["tags"] = {**self.tags, **given["tags"]}
        return dataclasses.replace(self, **given)
