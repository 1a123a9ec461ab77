"""Training curves to MLflow and TensorBoard: every record ``metrics.jsonl`` gets, at its step.

``report_to: [mlflow, tensorboard]`` in a finetune config (``--report-to mlflow,tensorboard``) picks
the trackers; without ``report_to`` the old ``tensorboard: true`` (the default) still means "also to
TensorBoard when it is installed", silently skipped when it is not. A tracker named in ``report_to``
that is not installed is a one-line error before any model loads.

Each numeric field of a record is one curve under its own name, the same in both trackers (MLflow's
sanitised when it must be): ``loss``, ``loss.<term>`` (each loss part), ``lr``, ``grad_norm``, ``tokens``,
``tokens_per_s``, ``epoch``, ``val_loss``, ``val_ppl``, ``best_val_loss``. At the end ``early_stopping``
(1 when patience ran out, else 0) and ``steps`` are logged and the tag ``stopped`` says why the run ended.
Only the main process (rank 0 under Accelerate) ever makes a tracker.

Example:
    >>> TrainingTracking.off().log({"step": 1, "loss": 2.0})   # no trackers: nothing happens
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .store import (INSTALL_HINT, MlflowRun, TrackingError, TrackingFailed, TrackingUnavailable, ended_on_failure, finite,
                    metric_names, resolve_uri)

log = logging.getLogger("audit")

TRACKERS = ("mlflow", "tensorboard")


def tensorboard_available(*, required: bool) -> bool:
    """Whether ``torch.utils.tensorboard`` imports; a one-line error instead when it is ``required``."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        if required:
            raise TrackingUnavailable(f"report_to: tensorboard: TensorBoard is not installed ({e}); install it with "
                                      f"{INSTALL_HINT}") from None
        return False   # tensorboard: true (the default) means "when installed"; metrics.jsonl has everything
    return True


def config_params(cfg: dict[str, Any]) -> dict[str, str]:
    """A finetune config as MLflow params: scalars as they are, mappings and lists as JSON."""
    return {k: (json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list, tuple)) else ("" if v is None else str(v)))
            for k, v in cfg.items()}


class TrainingTracking:
    """The trackers of one training run: ``log(record)`` per metrics.jsonl record, ``close(...)`` at the end.

    Args:
        tensorboard: the directory of TensorBoard's event files, or None.
        mlflow: an :class:`~audit.tracking.store.MlflowRun` or None.
        owns_mlflow: end the MLflow run at :meth:`close` (False: a caller such as harden logs more into it).
    """

    def __init__(self, *, tensorboard: Path | None = None, mlflow: MlflowRun | None = None, owns_mlflow: bool = True,
                 prefix: str = ""):
        self.tensorboard_dir = tensorboard   # the writer is made at the first record (no file for a run that never starts)
        self.tensorboard = None
        self.mlflow = mlflow
        self.owns_mlflow = owns_mlflow
        self.prefix = prefix
        self._names: dict[str, str] = {}
        self.failed: TrackingError | None = None

    @classmethod
    def off(cls) -> "TrainingTracking":
        return cls()

    @classmethod
    def open(cls, cfg, *, main: bool = True, mlflow_run: MlflowRun | None = None) -> "TrainingTracking":
        """The trackers ``cfg`` (a :class:`~audit.finetune.config.FinetuneConfig`) asks for; nothing off rank 0.

        ``mlflow_run``: log into this run (harden's) instead of starting one; it is not ended here.
        """
        if not main:
            return cls.off()
        trackers = cfg.trackers()
        required = cfg.report_to is not None and "tensorboard" in trackers
        out = Path(cfg.out_dir)
        tb_dir = out / "tensorboard" if "tensorboard" in trackers and tensorboard_available(required=required) else None
        mlflow = mlflow_run
        if "mlflow" in trackers and mlflow is None:
            mlflow = MlflowRun(resolve_uri(cfg.mlflow_uri or True), experiment=cfg.mlflow_experiment or "finetune",
                               run_name=cfg.mlflow_run_name or out.name, tags={"audit.kind": "finetune", "audit.out_dir": str(out)})
            with ended_on_failure(mlflow):
                mlflow.log_params(config_params(cfg.to_dict()))
        elif mlflow is not None:   # harden's run: the training config beside the audits' params
            mlflow.log_params({f"train.{k}": v for k, v in config_params(cfg.to_dict()).items()})
        return cls(tensorboard=tb_dir, mlflow=mlflow, owns_mlflow=mlflow_run is None)

    @property
    def active(self) -> bool:
        return self.tensorboard_dir is not None or self.mlflow is not None

    def log(self, rec: dict[str, Any]) -> None:
        """One metrics.jsonl record: each numeric field (bool aside) at ``rec["step"]``."""
        if not self.active:
            return
        step = int(rec.get("step", 0))
        values = {k: v for k, v in rec.items() if k != "step" and finite(v) and not isinstance(v, bool)}
        if self.tensorboard is None and self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.tensorboard_dir))
        if self.tensorboard is not None:
            for k, v in values.items():
                self.tensorboard.add_scalar(f"{self.prefix}{k}", v, step)
        if self.mlflow is not None and values:
            new = [f"{self.prefix}{k}" for k in values if f"{self.prefix}{k}" not in self._names]
            if new:
                self._names.update(metric_names(new))   # every record's names are the run's first ones, in practice
            try:
                self.mlflow.log_metrics({self._names[f"{self.prefix}{k}"]: v for k, v in values.items()}, step=step,
                                        synchronous=False)   # queued: a step never waits for the server
            except TrackingError as e:
                # A server hiccup must not kill a long training run: stop logging there, train on, and
                # say so at the end (close() raises it once the model is saved).
                self.failed = e
                log.warning("%s; MLflow logging stopped, training goes on (metrics.jsonl has every record)", e)
                self.mlflow.close_quietly("FAILED")
                self.mlflow = None

    def close(self, *, stopped: str | None = None, steps: int | None = None, status: str = "FINISHED") -> None:
        """Flush TensorBoard; log how the run ended; end the MLflow run when this object started it."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.tensorboard = self.tensorboard_dir = None
        if self.mlflow is None:
            if self.failed is not None and status == "FINISHED":
                failed, self.failed = self.failed, None
                raise TrackingFailed(f"{failed} (training finished; the model and metrics.jsonl are saved)")
            return
        run, self.mlflow = self.mlflow, None
        if status != "FINISHED":
            if self.owns_mlflow:
                run.close_quietly(status)
            return
        try:
            if stopped is not None:
                run.log_metrics({f"{self.prefix}early_stopping": float(stopped == "early_stopping"),
                                 **({f"{self.prefix}steps": float(steps)} if steps is not None else {})}, step=steps or 0)
                run.set_tags({f"{self.prefix}stopped": stopped})
            run.wait()   # every queued curve point is stored (or its failure raised) before the run ends
            if self.owns_mlflow:
                run.finish(status)
        except TrackingError as e:
            if self.owns_mlflow:
                run.close_quietly("FAILED")
            raise TrackingFailed(f"{e} (training finished; the model and metrics.jsonl are saved)") from None
