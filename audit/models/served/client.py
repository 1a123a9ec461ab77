"""HTTP for OpenAI-compatible servers: JSON over stdlib urllib, bounded retries with backoff and jitter.

Retried (up to ``max_attempts`` tries): 429 and 5xx answers, connection errors, timeouts and
answers that are not the JSON expected (a server restarting or a proxy page). Not retried: other
4xx answers (bad request, wrong key, unknown model), which a retry cannot fix. After the last try
the error is one line naming the endpoint and what went wrong, never the API key.

Backoff is "full jitter" (AWS architecture blog): sleep uniform(0, min(cap, base * 2**try)), so
many clients hit by one overload do not retry in lockstep; a 429's Retry-After is honoured up to the cap.

``timeout`` is a deadline for the whole request (connect, redirects, headers and body), not a
bound on each socket read: a watchdog shuts the connection down when it passes, so a server that
trickles a byte a second is stopped on time. An answer body larger than ``max_response_bytes`` is
refused as soon as the cap is passed (or at once, from its Content-Length) and not retried.

Messages never carry the key, however a server echoes it: :func:`redact_secret` hides it exact,
case-folded, cut to a prefix or fragment of 8+ letters and digits, or split by separators; a server's
error body shows at most a 120-character excerpt.

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

from ...errors import AuditError
from ...io.untrusted import one_line
from .spec import redact_url
from .transport import Deadline, RedirectRefused, TooLarge, mb, opener, read_capped

log = logging.getLogger("audit")

DEFAULT_MAX_RESPONSE_BYTES = 8 << 20   # 8 MiB: tens of thousands of echoed tokens with their log-probabilities


class ServedError(AuditError):
    """A served model could not answer: the run stops with exit 2 (finished generations stay cached).

    ``fatal`` tells the runner not to record it as one section's error and carry on: the server is
    gone for every section alike.
    """

    fatal = True


class ServedRequestError(ServedError):
    """A request the server refused for a reason a retry cannot fix (4xx other than 429)."""


class ServedBadValue(AuditError):
    """The server sent a number that cannot be right: a log-probability above 0 or not finite, a
    negative count, a boolean where a number belongs.

    Not retried (the server computed it; a retry gets the same) and not fatal: the section that asked
    records it as its one-line error, so its gates fail, and the run goes on.
    """


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Client:
    """One endpoint's JSON client; thread-safe (each call opens its own connection)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0, max_attempts: int = 5,
                 backoff: float = 0.5, backoff_max: float = 20.0, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
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
                except ServedBadValue as e:   # name the server: the parser only knows the position
                    raise ServedBadValue(self._clean(f"{method} {url}: {e}")) from None
                except AuditError:
                    raise
                except (ValueError, TypeError, LookupError, AttributeError) as e:
                    raise _Retryable(f"unexpected answer: {one_line(e, limit=200)}") from None
            except _Retryable as e:
                last = self._clean(str(e))   # logged at debug level below: no key there either
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
        deadline = Deadline(self.timeout)
        try:
            raw = self._exchange(method, url, req, deadline)
        finally:
            deadline.cancel()
        try:
            return json.loads(raw)
        except RecursionError:   # json's decoder recurses per level: [[[[... beyond ~1000 levels
            raise _Retryable(f"answer nested too deeply ({len(raw)} bytes of JSON)") from None
        except (ValueError, UnicodeDecodeError):   # JSONDecodeError, or an integer of more digits than Python parses
            if deadline.expired:
                raise _Retryable(self._late()) from None
            raise _Retryable(f"answer is not JSON ({len(raw)} bytes)") from None

    def _late(self) -> str:
        return f"no answer within the timeout of {self.timeout:g}s (a deadline for the whole request)"

    def _exchange(self, method: str, url: str, req: urllib.request.Request, deadline: Deadline) -> bytes:
        """Send ``req`` and read the answer's body, within the deadline and the size cap."""
        try:
            with opener(deadline).open(req, timeout=self.timeout) as resp:
                return read_capped(resp, self.max_response_bytes)
        except TooLarge as e:
            raise ServedError(self._clean(f"{method} {url}: the answer is larger than the {mb(self.max_response_bytes)} cap"
                                          f"{e.detail} (model.max_response_mb raises it)")) from None
        except RedirectRefused as e:
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
            raise _Retryable(self._late()) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if deadline.expired or isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retryable(self._late()) from None
            raise _Retryable(f"connection error: {one_line(reason, limit=200)}") from None
        except (ConnectionError, HTTPException, OSError) as e:
            if deadline.expired:   # the watchdog shut the socket: whatever broke, it broke because time ran out
                raise _Retryable(self._late()) from None
            raise _Retryable(f"connection error: {type(e).__name__}: {one_line(e, limit=200)}") from None

    def _clean(self, message: str) -> str:
        """Never let the key into a message, whatever a server echoes back (see :func:`redact_secret`)."""
        return redact_secret(message, self._key) if self._key else message


# Shortest run of a key's letters and digits that is redacted on its own: shorter pieces ("sk", "proj")
# occur in ordinary text, and 8 random alphanumerics leave too little of a key to be worth having.
MIN_SECRET_FRAGMENT = 8


def redact_secret(text: str, secret: str, *, min_fragment: int = MIN_SECRET_FRAGMENT) -> str:
    """``text`` with every recognisable form of ``secret`` replaced by ``***``.

    Matching ignores case and every character that is not a letter or digit, so the key upper-cased,
    with its dashes swapped for underscores or spaces, or split into groups is caught; any run of
    ``min_fragment`` or more of its letters and digits in order (a prefix, the key one character
    short, a piece from the middle) is redacted as well. A key shorter than that is redacted whole.

    Example:
        >>> redact_secret("bad key SK_ABCD_1234_WXYZ (sk-abcd-1234-wx)", "sk-abcd-1234-wxyz")
        'bad key *** (***)'
    """
    if not secret or not text:
        return text
    key = [c.lower() for c in secret if c.isalnum()]
    if not key:
        return text.replace(secret, "***")
    n = min(min_fragment, len(key))
    windows = {tuple(key[i:i + n]) for i in range(len(key) - n + 1)}
    where = [i for i, c in enumerate(text) if c.isalnum()]   # positions of the text's letters and digits
    flat = [text[i].lower() for i in where]
    spans: list[list[int]] = []   # [first, last) in `flat`; overlapping matches merge, adjacent ones do not
    for j in range(len(flat) - n + 1):
        if tuple(flat[j:j + n]) in windows:   # every n-run of a fragment of the key is an n-run of the key
            if spans and j < spans[-1][1]:
                spans[-1][1] = j + n
            else:
                spans.append([j, j + n])
    out, last = [], 0
    for first, end in spans:
        out.append(text[last:where[first]])
        out.append("***")
        last = where[end - 1] + 1
    out.append(text[last:])
    return "".join(out)


MAX_ERROR_EXCERPT = 120   # characters of a server's error message shown; the body itself never


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
        text = one_line(clean(str(msg)[:4096]), limit=MAX_ERROR_EXCERPT)
    except Exception:  # noqa: BLE001 - the status code alone is still a useful message
        text = ""
    return f" ({text})" if text else ""


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    value = e.headers.get("Retry-After") if e.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
