"""Open a report in a real headless Chromium, offline, and look at it: console errors, DOM queries,
dialogs, screenshots. Used by the report tests and to make the README screenshot.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON
messages separated by NUL), so it needs only the standard library and a ``chromium`` binary.

Example:
    $ python -m audit.report.browser reports/demo/report.html --screenshot docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# No network, no background services, no first-run UI: the page is all there is.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-default-apps", "--mute-audio", "--no-default-browser-check", "--hide-scrollbars",
                  "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Page:
    """A headless Chromium with one page; use as a context manager.

    Attributes:
        events: every protocol event received (console calls, exceptions, log entries, dialogs).
    """

    def __init__(self, *, width: int = 1280, height: int = 900, timeout: float = 30.0, binary: str | None = None):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("chromium not found (install the Debian package `chromium`)")
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._id = 0

    # ---- process and protocol plumbing ----------------------------------------------------
    def __enter__(self) -> "Page":
        self._profile = tempfile.mkdtemp(prefix="audit-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def wire():  # in the child: its fd 3 reads our commands, its fd 4 writes replies
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Page", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False}, session=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._send("Browser.close")
            self._proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - closing; make sure it is gone
            self._proc.kill()
            self._proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def _send(self, method: str, params: dict | None = None, session: bool = False) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise BrowserError("chromium exited")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        """Send a protocol command and return its result (events that arrive meanwhile are kept)."""
        mid = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._next(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            msg = self._next(deadline)
            if "id" not in msg:
                self.events.append(msg)
                if msg.get("method") == method:
                    return msg

    # ---- what tests use ---------------------------------------------------------------------
    def open(self, path: str | os.PathLike) -> None:
        """Load a local file and wait for its load event."""
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=True)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluation failed: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, error log entries (CSP violations...) and dialogs."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}".strip())
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log.{p['entry']['level']}: {p['entry'].get('text')}")
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('type')} {p.get('message')}")
        return out

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = int(self.eval("document.documentElement.scrollHeight"))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Open an HTML report in headless Chromium; report problems; screenshot it.")
    ap.add_argument("html")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--full-page", action="store_true")
    args = ap.parse_args(argv)
    with Page(width=args.width, height=args.height) as page:
        page.open(args.html)
        ready = page.eval("document.documentElement.getAttribute('data-report-ready')")
        if args.screenshot:
            page.screenshot(args.screenshot, full_page=args.full_page)
        problems = page.problems()
    for p in problems:
        print(p)
    print(f"ready={ready} problems={len(problems)}")
    return 1 if problems or ready != "1" else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
