"""Headless Chromium driven over the DevTools protocol, for the selftests that
check what a report page does in a real browser (Debian's `chromium` package).

The protocol goes over --remote-debugging-pipe (fd 3 in, fd 4 out, one JSON
message per NUL-terminated record), so no websocket library and no port are
needed. Chromium is started with everything that would reach for the network
turned off: the machines this runs on have none, and it would hang.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--remote-debugging-pipe")
TIMEOUT_S = 30.0


def chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


class BrowserError(RuntimeError):
    pass


class Page:
    """One page in a fresh headless Chromium: ``with Page(path) as page: page.js(...)``.

    ``errors`` collects every uncaught script exception and console error."""

    def __init__(self, path: Path, width: int = 1400, height: int = 1000):
        exe = chromium()
        if exe is None:
            raise BrowserError("no Chromium on PATH (apt-get install chromium)")
        self.errors: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="xpuperf-chromium-")
        to_browser, self._in = os.pipe()  # we write, Chromium reads on fd 3
        self._out, from_browser = os.pipe()  # Chromium writes on fd 4, we read

        def fds() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self._proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict] = []
        try:
            target = self._call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._call("Target.attachToTarget", targetId=target,
                                       flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
            self.call("Page.navigate", url=Path(path).resolve().as_uri())
            self._wait_event("Page.loadEventFired")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=TIMEOUT_S)
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression!r} threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A mouse click in the middle of the first element ``selector`` matches."""
        box = self.js(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def select(self, selector: str, value: str) -> None:
        """Choose ``value`` in a <select> (or type it into an <input>), as a user does."""
        self.js(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            el.value = {json.dumps(value)};
            el.dispatchEvent(new Event(el.tagName === "INPUT" ? "input" : "change"));
        }})()""")

    def screenshot(self, path: Path) -> None:
        """The whole page as a PNG."""
        height = int(self.js("document.documentElement.scrollHeight"))
        width = int(self.js("document.documentElement.scrollWidth"))
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        Path(path).write_bytes(base64.b64decode(data["data"]))

    def call(self, method: str, **params: Any) -> dict:
        """A command to the page's session."""
        return self._call(method, session=self._session, **params)

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._in, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _wait_event(self, method: str) -> None:
        while not any(e.get("method") == method for e in self._events):
            self._event(self._read())

    def _event(self, msg: dict) -> None:
        self._events.append(msg)
        params = msg.get("params", {})
        if msg.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description")
                                   or details.get("text")))
        elif (msg.get("method") == "Log.entryAdded"
              and params.get("entry", {}).get("level") == "error"):
            self.errors.append(str(params["entry"].get("text")))
        elif msg.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))

    def _read(self) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buf:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise BrowserError("Chromium did not answer over the DevTools pipe "
                                   f"(exit status {self._proc.poll()})")
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)
