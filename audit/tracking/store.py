"""One MLflow run: the tracking URI, the checks made before any model loads, and batched logging.

MLflow is optional (``pip install 'audit[tracking]'``) and imported only here, only when a run asks
for it. Every failure is one line naming the URI: MLflow missing, a server that does not answer,
a store that refuses a write. Names are sanitised to what MLflow accepts; values that are not finite
numbers are never logged as metrics (the caller lists them in a tag); every string that goes to the
server passes through :func:`~audit.models.served.client.redact_secret` for each secret given (a
served model's API key).

Default store: ``--mlflow`` without a URI logs to ``$MLFLOW_TRACKING_URI`` when it is set, else to
``./mlruns/mlflow.db`` (SQLite; artifacts in ``./mlruns/artifacts``). MLflow 3.17's own default is
``sqlite:///mlflow.db`` in the working directory with artifacts in ``./mlruns``, and it refuses the
old file store (``./mlruns`` as a directory of YAML files) unless ``MLFLOW_ALLOW_FILE_STORE=true``:
one directory holding both is easier to find, move and delete. A plain path (no ``scheme://``) names
such a directory: ``--mlflow runs/tracking`` -> ``sqlite:///ABS/runs/tracking/mlflow.db``.

Example:
    >>> resolve_uri("runs/t").endswith("/runs/t/mlflow.db")
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

from ..errors import AuditError, first_line
from ..io.untrusted import one_line
from ..models.served.client import redact_secret
from ..models.served.spec import redact_url

log = logging.getLogger("audit")

INSTALL_HINT = "pip install 'audit[tracking]'"
DEFAULT_DIR = "mlruns"
#: Seconds the reachability check of a tracking server waits (MLflow's own client retries for minutes).
PROBE_TIMEOUT = 10.0

# MLflow's limits (mlflow.utils.validation): key length, value lengths, entities per log_batch call.
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_BATCH_METRICS, _BATCH_PARAMS_TAGS = 1000, 100
# What MLflow accepts in a metric or param name on every platform (no colon: Windows refuses it).
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\- /]")


class TrackingError(AuditError):
    """Tracking failed: MLflow missing, the server unreachable, or a write refused (one line, the URI named)."""


class TrackingUnavailable(TrackingError):
    """MLflow (or TensorBoard) is not installed."""


def import_mlflow(what: str = "mlflow tracking"):
    """The ``mlflow`` module, or a one-line :class:`TrackingUnavailable` naming the fix."""
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError as e:
        raise TrackingUnavailable(f"{what}: MLflow is not installed ({first_line(e)}); install it with "
                                  f"{INSTALL_HINT}") from None
    return mlflow


def resolve_uri(value: bool | str | None) -> str:
    """The tracking URI for a setting: true/None -> ``$MLFLOW_TRACKING_URI`` or ``./mlruns/mlflow.db``;
    ``scheme://...`` (and ``databricks``) as given; any other string a directory for a SQLite store."""
    if value in (None, True, ""):
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        value = DEFAULT_DIR
    value = str(value)
    if "://" in value or value.startswith(("sqlite:", "databricks")):
        return value
    return f"sqlite:///{(Path(value).expanduser().resolve() / 'mlflow.db').as_posix()}"


def display_uri(uri: str) -> str:
    """The URI for messages and tags: credentials and queries of an http(s) URI dropped."""
    return redact_url(uri) if uri.startswith(("http://", "https://")) else uri


def _sqlite_dir(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):]
    return Path(path).parent if path and path != ":memory:" else None


def check_reachable(uri: str, *, timeout: float = PROBE_TIMEOUT) -> None:
    """A tracking server that answers at all (any HTTP status) is reachable; a refused, reset or silent
    connection is a one-line :class:`TrackingError` naming the URI. Local stores: the directory is made."""
    if uri.startswith(("http://", "https://")):
        # Probed without user info (urllib reads user:pass@host as a port) or query; a 401 still answers.
        url = display_uri(uri).rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:   # noqa: S310 - http(s) only, checked above
                r.read(64)
        except urllib.error.HTTPError:
            return   # it answered (a proxy, a server without /health): the API calls will say more
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            why = first_line(why) if isinstance(why, BaseException) else str(why)
            raise TrackingError(f"MLflow tracking server {display_uri(uri)} is unreachable ({one_line(why, limit=200)}); "
                                f"start it or give another URI") from None
        return
    folder = _sqlite_dir(uri)
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"MLflow store {uri}: cannot create {folder} ({first_line(e)})") from None


def sanitize_key(name: str) -> str:
    """A metric/param/tag name MLflow accepts: other characters -> ``_``, no ``..`` or leading ``/``, <= 250.

    Example:
        >>> sanitize_key("bias.gap[gender/female]")
        'bias.gap_gender/female_'
    """
    key = _BAD_CHARS.sub("_", str(name)).replace("..", "_.").replace("//", "/_").strip("/") or "_"
    return key[:MAX_KEY]


def finite(value: Any) -> bool:
    """Whether ``value`` is a number MLflow can store as a metric (bool counts as 0/1)."""
    return isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value))


class MlflowRun:
    """An MLflow run through :class:`mlflow.tracking.MlflowClient` (no global ``mlflow.start_run`` state:
    an audit inside a user's own active run never ends or pollutes it).

    Args:
        uri: tracking URI (see :func:`resolve_uri`).
        experiment: experiment name; made when missing (a SQLite store's artifacts go beside the database).
        run_name: the run's name.
        tags: run tags.
        secrets: strings that must never reach the server (redacted from every name and value).
    """

    def __init__(self, uri: str, *, experiment: str, run_name: str | None = None, tags: dict[str, Any] | None = None,
                 secrets: Sequence[str] = ()):
        import_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        # A password in the URI is a secret like an API key: never in a message, name or value.
        password = urlsplit(uri).password if uri.startswith(("http://", "https://")) else None
        self.secrets = [s for s in [*secrets, password] if s]
        check_reachable(uri)
        try:
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                folder = _sqlite_dir(uri)
                location = (folder / "artifacts").resolve().as_uri() if folder is not None else None
                exp_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                exp_id = exp.experiment_id
            all_tags = {k: self._clean(str(v), MAX_TAG_VALUE) for k, v in (tags or {}).items()}
            run = self.client.create_run(exp_id, tags={sanitize_key(k): v for k, v in all_tags.items()},
                                         run_name=self._clean(run_name, MAX_TAG_VALUE) if run_name else None)
        except TrackingError:
            raise
        except Exception as e:  # noqa: BLE001 - any MLflow/HTTP/DB failure: one line naming the store
            raise self.error("cannot start a run", e) from None
        self.run_id = run.info.run_id
        self.experiment_id = exp_id
        self.finished = False
        self._pending: list[Any] = []   # RunOperations of metrics queued with synchronous=False

    # ---- helpers -----------------------------------------------------------------------
    def _clean(self, text: str, limit: int) -> str:
        for s in self.secrets:
            text = redact_secret(text, s)
        return text[:limit]

    def error(self, what: str, e: BaseException) -> TrackingError:
        msg = self._clean(one_line(first_line(e), limit=300), 300)
        return TrackingError(f"MLflow at {display_uri(self.uri)}: {what}: {type(e).__name__}: {msg}")

    def _call(self, what: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            raise self.error(what, e) from None

    # ---- logging -----------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(sanitize_key(self._clean(k, MAX_KEY)), self._clean(str(v), MAX_PARAM_VALUE)) for k, v in params.items()]
        for i in range(0, len(items), _BATCH_PARAMS_TAGS):
            self._call("log params", self.client.log_batch, self.run_id, params=items[i:i + _BATCH_PARAMS_TAGS])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(sanitize_key(self._clean(k, MAX_KEY)), self._clean(str(v), MAX_TAG_VALUE)) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH_PARAMS_TAGS):
            self._call("set tags", self.client.log_batch, self.run_id, tags=items[i:i + _BATCH_PARAMS_TAGS])

    def log_metrics(self, metrics: dict[str, float], *, step: int = 0, synchronous: bool = True) -> None:
        """Log finite values (names already sanitised by the caller, see :func:`metric_names`) at ``step``.

        ``synchronous=False`` queues them on MLflow's async logger (a training step does not wait for the
        server); :meth:`wait` (and :meth:`finish`) block until they are stored and raise what failed.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if finite(v)]
        for i in range(0, len(items), _BATCH_METRICS):
            ops = self._call("log metrics", self.client.log_batch, self.run_id, metrics=items[i:i + _BATCH_METRICS],
                             synchronous=synchronous)
            if ops is not None:
                self._pending.append(ops)

    def wait(self) -> None:
        """Block until every queued metric is stored; a one-line :class:`TrackingError` for any that failed."""
        pending, self._pending = self._pending, []
        for ops in pending:
            self._call("log metrics", ops.wait)

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for p in paths:
            if Path(p).is_file():
                self._call(f"upload {Path(p).name}", self.client.log_artifact, self.run_id, str(p), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run (FINISHED / FAILED / KILLED); a second call does nothing."""
        if self.finished:
            return
        self.finished = True
        try:
            self.wait()
        except TrackingError:
            self._call("end the run", self.client.set_terminated, self.run_id, status="FAILED")
            raise
        # MLflow prints "View run ... at URL" on stdout: the summary there is audit's (the log line says where).
        with contextlib.redirect_stdout(io.StringIO()):
            self._call("end the run", self.client.set_terminated, self.run_id, status=status)

    def close_quietly(self, status: str) -> None:
        """End the run after another failure, without raising over it."""
        try:
            self.finish(status)
        except TrackingError as e:
            log.warning("%s", e)


@contextlib.contextmanager
def ended_on_failure(run: MlflowRun | None):
    """Inside the block, an exception ends ``run`` as FAILED (quietly: the exception is what the user sees) and
    is raised on; no-op without a run."""
    try:
        yield
    except BaseException:
        if run is not None:
            run.close_quietly("FAILED")
        raise


@contextlib.contextmanager
def finished_or_failed(run: MlflowRun, result, *, where: str):
    """Log into ``run`` inside the block, then end it FINISHED; a tracking failure ends it FAILED and is raised
    as :class:`TrackingFailed` holding ``result`` (an :class:`~audit.results.AuditResult`-like object with
    ``passed``), its message saying ``where`` the results are and whether the gates passed."""
    try:
        yield
        run.finish("FINISHED")
    except TrackingError as e:
        run.close_quietly("FAILED")
        raise TrackingFailed(f"{e} ({where}; gates {'passed' if result.passed else 'failed'})", result=result) from None


def metric_names(names: Iterable[str]) -> dict[str, str]:
    """original name -> MLflow name (sanitised; a clash after sanitising gets ``_2``, ``_3``, ...).

    Example:
        >>> metric_names(["a[b]", "a(b)", "c"])
        {'a[b]': 'a_b_', 'a(b)': 'a_b__2', 'c': 'c'}
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        key = base = sanitize_key(name)
        n = 2
        while key in used:
            key = f"{base[:MAX_KEY - 4]}_{n}"
            n += 1
        used.add(key)
        out[name] = key
    return out


class TrackingFailed(TrackingError):
    """Logging a finished audit failed; results.json and the reports were written first (``result`` holds it)."""

    def __init__(self, message: str, *, result: Any = None):
        super().__init__(message)
        self.result = result


def served_secrets(spec: Any) -> list[str]:
    """The API key of a served model spec (from the environment variable it names), to keep out of tracking."""
    name = getattr(spec, "api_key_env", None)
    key = os.environ.get(name) if name else None
    return [key] if key else []
