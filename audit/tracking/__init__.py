"""Experiment tracking: audits, fine-tunes and harden loops logged to MLflow, training curves to TensorBoard.

Optional: ``pip install 'audit[tracking]'`` (mlflow, tensorboard). Nothing here imports MLflow until
a run asks for it. See docs/tracking.md for what is logged under which names.

- :class:`TrackingSettings`: a suite's ``tracking:`` block (``--mlflow [URI]`` over it).
- :class:`MlflowRun`, :func:`resolve_uri`: one run on a tracking server or a local store.
- :func:`log_audit`, :func:`log_harden`: an audit / a before-after pair into a run.
- :class:`TrainingTracking`: the trainer's curves to MLflow and TensorBoard (rank 0 only).
"""

from __future__ import annotations

from .audit_log import audit_metrics, audit_params, gate_metrics, log_audit, log_harden
from .settings import TrackingSettings
from .store import (INSTALL_HINT, MlflowRun, TrackingError, TrackingFailed, TrackingUnavailable, check_reachable,
                    ended_on_failure, import_mlflow, resolve_uri, sanitize_key)
from .training import TRACKERS, TrainingTracking

__all__ = ["TrackingSettings", "MlflowRun", "TrackingError", "TrackingFailed", "TrackingUnavailable", "INSTALL_HINT", "check_reachable",
           "ended_on_failure",
           "import_mlflow", "resolve_uri", "sanitize_key", "log_audit", "log_harden", "audit_params", "audit_metrics",
           "gate_metrics", "TrainingTracking", "TRACKERS"]
