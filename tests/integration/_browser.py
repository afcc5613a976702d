# -*- coding: utf-8 -*-
"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: commands on fd 3, replies on fd 4, NUL-separated JSON): no
port, no extra package. Opens a page, records every network request, console message,
exception and log error, evaluates JavaScript in it, takes screenshots."""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium: apt-get install chromium (tools/install-deps.sh installs it)")


class Browser:
    def __init__(self, timeout=60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="dbhygiene-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Out of the way of fds 3 and 4, which the child gets them as.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 20)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 20)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [
                chromium_path(),
                "--headless=new",
                "--no-sandbox",  # the tests run as root in a container
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                "--user-data-dir=" + self.profile,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire,
        )
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self.events = []
        target = self.command("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.command("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.command(domain + ".enable", session=True)

    def _send(self, message):
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise TimeoutError("chromium did not answer in time (or exited: %r)" % self.process.poll())
            ready, _w, _x = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def command(self, method, session=False, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result") or {}
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method, since):
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events[since:]:
                if event["method"] == method:
                    return event
            self.events.append(self._receive(deadline))

    def open(self, path, device=None):
        """Load the file at `path` at the size of `device` (default DESKTOP); returns the index of its first event."""
        self.command("Emulation.setDeviceMetricsOverride", session=True, **(device or DESKTOP))
        since = len(self.events)
        self.command("Page.navigate", session=True, url="file://" + os.path.abspath(path))
        self.wait_event("Page.loadEventFired", since)
        return since

    def evaluate(self, expression):
        result = self.command("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self, path):
        data = self.command("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))

    def requests(self, since=0):
        sent = [event for event in self.events[since:] if event["method"] == "Network.requestWillBeSent"]
        return [event["params"]["request"]["url"] for event in sent]

    def problems(self, since=0):
        """Console messages, uncaught exceptions and log entries of level error (a blocked load, a CSP refusal)."""
        found = []
        for event in self.events[since:]:
            if event["method"] in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown"):
                found.append(event["params"])
            elif event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
                found.append(event["params"]["entry"])
        return found

    def close(self):
        try:
            self._send({"id": 0, "method": "Browser.close"})
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)
