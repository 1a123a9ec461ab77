"""HTTP for OpenAI-compatible servers: JSON over stdlib urllib, bounded retries with backoff and jitter.

Retried (up to ``max_attempts`` tries): 429 and 5xx answers, connection errors, timeouts and
answers that are not the JSON expected (a server restarting or a proxy page). Not retried: other
4xx answers (bad request, wrong key, unknown model), which a retry cannot fix. After the last try
the error is one line naming the endpoint and what went wrong, never the API key.

Backoff is "full jitter" (AWS architecture blog): sleep uniform(0, min(cap, base * 2**try)), so
many clients hit by one overload do not retry in lockstep; a 429's Retry-After is honoured up to the cap.

Redirects (at most 5) are followed only to http(s) URLs, and the ``Authorization`` header is dropped
on any redirect that changes scheme, host or port, as ``requests`` does: the key is for the server
the user named, never for wherever that server points.

Example:
    >>> c = Client("http://127.0.0.1:9/v1", max_attempts=1, timeout=0.5)
    >>> c.post_json("/completions", {})  # doctest: +SKIP
    Traceback (most recent call last):
    ServedError: POST http://127.0.0.1:9/v1/completions failed after 1 try: connection error ...
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any, Callable
from urllib.parse import urlsplit

from ...errors import AuditError
from ...io.untrusted import one_line
from .spec import redact_url

log = logging.getLogger("audit")


class ServedError(AuditError):
    """A served model could not answer: the run stops with exit 2 (finished generations stay cached).

    ``fatal`` tells the runner not to record it as one section's error and carry on: the server is
    gone for every section alike.
    """

    fatal = True


class ServedRequestError(ServedError):
    """A request the server refused for a reason a retry cannot fix (4xx other than 429)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Client:
    """One endpoint's JSON client; thread-safe (each call opens its own connection)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0, max_attempts: int = 5,
                 backoff: float = 0.5, backoff_max: float = 20.0, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._rng = random.Random()   # jitter only: never touches the run's seeded randomness
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}

    def get_json(self, path: str, *, parse: Callable[[Any], Any] | None = None) -> Any:
        return self._call("GET", path, None, parse)

    def post_json(self, path: str, body: dict, *, parse: Callable[[Any], Any] | None = None) -> Any:
        """POST ``body``; ``parse`` turns the JSON answer into the value wanted, and a ``ValueError``
        from it (an answer of the wrong shape) is retried like garbage; an ``AuditError`` is not."""
        return self._call("POST", path, body, parse)

    # ---- internals ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None, parse: Callable[[Any], Any] | None) -> Any:
        url = self.base_url + path
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            with self._lock:
                self.stats["requests"] += 1
            try:
                obj = self._once(method, url, body)
                if parse is None:
                    return obj
                try:
                    return parse(obj)
                except AuditError:
                    raise
                except (ValueError, TypeError, KeyError, AttributeError) as e:
                    raise _Retryable(f"unexpected answer: {one_line(e, limit=200)}") from None
            except _Retryable as e:
                last = str(e)
                if attempt == self.max_attempts:
                    break
                delay = self._rng.uniform(0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))
                if e.retry_after is not None:
                    delay = max(delay, min(self.backoff_max, e.retry_after))
                with self._lock:
                    self.stats["retries"] += 1
                log.debug("%s %s: %s; retry %d in %.2fs", method, url, last, attempt, delay)
                self._sleep(delay)
        tries = f"{self.max_attempts} {'try' if self.max_attempts == 1 else 'tries'}"
        raise ServedError(self._clean(f"{method} {url} failed after {tries}: {last}"))

    def _once(self, method: str, url: str, body: dict | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _opener().open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except _RedirectRefused as e:
            raise ServedRequestError(self._clean(f"{method} {url}: {e}")) from None
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:   # a redirect urllib would not follow (e.g. to file:)
                where = redact_url(e.headers.get("Location", "")) if e.headers else "<url>"
                raise ServedRequestError(self._clean(f"{method} {url}: HTTP {e.code} redirect to {where} not followed")) from None
            detail = _error_detail(e, self._clean)
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}{detail}", _retry_after(e)) from None
            raise ServedRequestError(self._clean(f"{method} {url}: HTTP {e.code}{detail}")) from None
        except (socket.timeout, TimeoutError):
            raise _Retryable(f"no answer within the timeout of {self.timeout:g}s") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"no answer within the timeout of {self.timeout:g}s") from None
            raise _Retryable(f"connection error: {one_line(reason, limit=200)}") from None
        except (ConnectionError, HTTPException, OSError) as e:
            raise _Retryable(f"connection error: {type(e).__name__}: {one_line(e, limit=200)}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable(f"answer is not JSON ({len(raw)} bytes)") from None

    def _clean(self, message: str) -> str:
        """Never let the key into a message, whatever a server echoes back."""
        if self._key:
            message = message.replace(self._key, "***")
        return message


class _RedirectRefused(Exception):
    """A redirect the client will not follow (not http(s), or too many)."""


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    port = p.port or {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme, (p.hostname or "").lower(), port


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, minus the key on cross-origin hops and minus non-http(s) targets."""

    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise _RedirectRefused(f"HTTP {code} redirect to {redact_url(newurl)} not followed (only http and https)")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            # urllib copies every header to the new request; the key must not reach another origin.
            new.remove_header("Authorization")
        if new is not None:
            fp.close()   # urllib would read the redirect's body whole, however large: it is never needed
        return new

    def http_error_302(self, req, fp, code, msg, headers):
        try:
            return super().http_error_302(req, fp, code, msg, headers)
        except urllib.error.HTTPError as e:
            if not 300 <= e.code < 400:
                raise   # the final target's own error
            why = "a loop or more than 5 redirects" if "infinite loop" in str(e.msg) else "only http and https are followed"
            raise _RedirectRefused(f"HTTP {code} redirect not followed ({why})") from None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener() -> urllib.request.OpenerDirector:
    """An opener for http(s) only (no file:, ftp: or data: handlers a redirect could reach)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    _RedirectHandler(), urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _error_detail(e: urllib.error.HTTPError, clean: Callable[[str], str]) -> str:
    """The server's error message, bounded and on one line (servers put the reason in the body).

    ``clean`` removes the key before the message is cut, so no prefix of it survives a cut.
    """
    try:
        body = e.read(4096)
        obj = json.loads(body)
        msg = obj.get("error", obj) if isinstance(obj, dict) else obj
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        text = one_line(clean(str(msg)), limit=200)
    except Exception:  # noqa: BLE001 - the status code alone is still a useful message
        text = ""
    return f" ({text})" if text else ""


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    value = e.headers.get("Retry-After") if e.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
