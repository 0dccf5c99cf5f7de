"""A real headless Chromium, driven over the DevTools protocol (websocket-client, no WebDriver): open a
page, wait for the JSON its `#result` element receives, take a screenshot.

    with HeadlessChromium() as browser:
        result = browser.result_of("http://127.0.0.1:8000/index.html?image=cat.png")
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


# WebGPU on the CPU: SwiftShader's Vulkan gives headless Chromium a (software) WebGPU adapter, so the
# page's WebGPU path runs on a machine without a GPU.
WEBGPU_FLAGS = (
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-vulkan-surface",
)


class HeadlessChromium:
    def __init__(self, width: int = 900, height: int = 760, start_timeout: float = 60, webgpu: bool = False):
        import websocket  # websocket-client, a test dependency

        executable = chromium_path()
        if executable is None:
            raise FileNotFoundError("no Chromium on PATH (make browser installs it)")
        self._profile = tempfile.mkdtemp(prefix="mobilenets-chromium-")
        self._process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",
                *(WEBGPU_FLAGS if webgpu else ("--disable-gpu",)),
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + start_timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.close()
                raise RuntimeError(f"Chromium did not start within {start_timeout} s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def result_of(self, url: str, timeout: float = 120) -> dict:
        """Open `url` and return the JSON the page writes into #result."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        time.sleep(0.2)  # the old document's #result must not be read
        while time.monotonic() < deadline:
            text = self.evaluate("(document.getElementById('result') || {}).textContent || ''")
            if text:
                return json.loads(text)
            time.sleep(0.2)
        status = self.evaluate("(document.getElementById('status') || {}).textContent || ''")
        raise TimeoutError(f"{url}: no #result within {timeout} s (status: {status!r})")

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """The page's size in CSS pixels (a phone's with mobile=True), whatever the window's."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def screenshot(self, path: str | Path) -> None:
        Path(path).write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
