"""One request to an OpenAI-compatible server, bounded: a deadline, a size cap, safe redirects.

urllib alone bounds each socket read, not a request (a server sending a byte a second never times
out), reads a body whole whatever its size, and copies every header, the API key included, to
wherever a redirect points. :func:`opener` builds an http(s)-only opener whose connections a
:class:`Deadline` shuts down when the request's time is up and whose redirect handler drops
``Authorization`` when the origin changes; :func:`read_capped` reads a body up to a cap.

Example:
    >>> d = Deadline(5.0)
    >>> 0 < d.remaining() <= 5.0
    True
    >>> d.cancel()
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from .spec import redact_url


class RedirectRefused(Exception):
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
            raise RedirectRefused(f"HTTP {code} redirect to {redact_url(newurl)} not followed (only http and https)")
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
            raise RedirectRefused(f"HTTP {code} redirect not followed ({why})") from None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class TooLarge(Exception):
    def __init__(self, detail: str = ""):
        super().__init__(detail)
        self.detail = detail


def mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"


def read_capped(resp, cap: int) -> bytes:
    """The body, refusing it as soon as it passes ``cap`` bytes (never holding more than ~cap in memory)."""
    declared = resp.headers.get("Content-Length") if resp.headers else None
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise TooLarge(f" (Content-Length {int(declared)})")
    chunks, size = [], 0
    while True:
        chunk = resp.read1(1 << 16)   # whatever has arrived (chunked bodies included), not a full 64 KiB
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise TooLarge()
        chunks.append(chunk)


class Deadline:
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


def _watched(conn_class, deadline: Deadline, host, **kw):
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
    def __init__(self, deadline: Deadline):
        super().__init__()
        self._deadline = deadline

    def http_open(self, req):
        return self.do_open(functools.partial(_watched, http.client.HTTPConnection, self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self._deadline = deadline

    def https_open(self, req):
        return self.do_open(functools.partial(_watched, http.client.HTTPSConnection, self._deadline), req,
                            context=self._context)


def opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    """An opener for http(s) only (no file:, ftp: or data: handlers a redirect could reach), under one deadline."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _HTTPHandler(deadline), _HTTPSHandler(deadline),
                    _RedirectHandler(), urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener
