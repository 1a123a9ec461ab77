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

import functools
import http.client
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
        deadline = _Deadline(self.timeout)
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

    def _exchange(self, method: str, url: str, req: urllib.request.Request, deadline: "_Deadline") -> bytes:
        """Send ``req`` and read the answer's body, within the deadline and the size cap."""
        try:
            with _opener(deadline).open(req, timeout=self.timeout) as resp:
                return _read_capped(resp, self.max_response_bytes)
        except _TooLarge as e:
            raise ServedError(self._clean(f"{method} {url}: the answer is larger than the {_mb(self.max_response_bytes)} cap"
                                          f"{e.detail} (model.max_response_mb raises it)")) from None
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


class _TooLarge(Exception):
    def __init__(self, detail: str = ""):
        super().__init__(detail)
        self.detail = detail


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"


def _read_capped(resp, cap: int) -> bytes:
    """The body, refusing it as soon as it passes ``cap`` bytes (never holding more than ~cap in memory)."""
    declared = resp.headers.get("Content-Length") if resp.headers else None
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise _TooLarge(f" (Content-Length {int(declared)})")
    chunks, size = [], 0
    while True:
        chunk = resp.read1(1 << 16)   # whatever has arrived (chunked bodies included), not a full 64 KiB
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise _TooLarge()
        chunks.append(chunk)


class _Deadline:
    """Shuts down every socket of one request when its time is up (a per-read timeout never fires
    for a server that sends a byte a second)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same kernel socket: TLS wrapping detaches `sock` (the SSL socket
        # takes its descriptor over), but shutdown() through the duplicate still ends the connection.
        try:
            sock = sock.dup()
        except OSError:
            pass
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._socks:
                try:
                    sock.close()   # the duplicates only; the connection closes its own
                except OSError:
                    pass
            self._socks.clear()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)   # wakes a recv blocked in another thread; close() would not
    except OSError:
        pass


def _watched(conn_class, deadline: _Deadline, host, **kw):
    """An http.client connection whose sockets the deadline can shut down; connect waits at most what is left."""
    timeout = kw.get("timeout")
    if isinstance(timeout, (int, float)):
        kw["timeout"] = min(timeout, deadline.remaining())
    conn = conn_class(host, **kw)
    create = conn._create_connection

    def create_watched(*args, **kwargs):
        sock = create(*args, **kwargs)
        deadline.watch(sock)   # before any TLS handshake, so the deadline bounds that too
        return sock

    conn._create_connection = create_watched
    return conn


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def http_open(self, req):
        return self.do_open(functools.partial(_watched, http.client.HTTPConnection, self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def https_open(self, req):
        return self.do_open(functools.partial(_watched, http.client.HTTPSConnection, self._deadline), req,
                            context=self._context)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener for http(s) only (no file:, ftp: or data: handlers a redirect could reach), under one deadline."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _HTTPHandler(deadline), _HTTPSHandler(deadline),
                    _RedirectHandler(), urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


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
