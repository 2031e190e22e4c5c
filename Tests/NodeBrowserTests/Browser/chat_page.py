"""Drives the demo chat page in headless Chromium (Debian's chromium) through the DevTools protocol.

Usage: chat_page.py NODE_PORT SCREENSHOT_PATH
Opens two tabs on http://127.0.0.1:NODE_PORT/ (room "lobby"), has each send a message through the page's own
input and button, and waits until both pages show both messages. Prints "OK" and saves a screenshot of the
first tab; on failure prints why and exits 1.
"""
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tab:
    def __init__(self, url):
        self.url = url
        self.socket = None
        self.next_id = 0

    async def __aenter__(self):
        self.socket = await websockets.connect(self.url, max_size=None)
        return self

    async def __aexit__(self, *args):
        await self.socket.close()

    async def call(self, method, **params):
        self.next_id += 1
        request_id = self.next_id
        await self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("id") == request_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.evaluate(expression):
                    return True
            except RuntimeError as error:
                # The page is still loading (or navigating): it has no context to evaluate in yet.
                if "execution context" not in str(error):
                    raise
            await asyncio.sleep(0.05)
        return False


class Chromium:
    """Headless Chromium with its DevTools endpoint on a free port; `debug_port` once entered."""

    def __enter__(self):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            raise RuntimeError("chromium is not installed: apt-get install -y chromium")
        self.debug_port = free_port()
        self.profile = tempfile.mkdtemp(prefix="swift-channels-chromium-")
        self.process = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--remote-debugging-port={self.debug_port}", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *args):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


    async def open_tab(self, url):
        """A new tab on `url`: its DevTools target (retried while Chromium starts)."""
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{self.debug_port}/json/new?{url}", method="PUT")
                return json.loads(urllib.request.urlopen(request, timeout=2).read())
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium's DevTools endpoint did not come up")
                await asyncio.sleep(0.2)


async def main(node_port, screenshot_path):
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    try:
        page_url = f"http://127.0.0.1:{node_port}/"
        targets = [await browser.open_tab(page_url), await browser.open_tab(page_url)]
        async with Tab(targets[0]["webSocketDebuggerUrl"]) as first, Tab(targets[1]["webSocketDebuggerUrl"]) as second:
            for tab in (first, second):
                if not await tab.wait_for("document.getElementById('status') && document.getElementById('status').textContent.startsWith('connected')"):
                    print("a page did not connect: " + str(await tab.evaluate("document.getElementById('status').textContent")))
                    return 1
            for tab, text in ((first, "hello from the first page"), (second, "hi from the second page")):
                await tab.evaluate(
                    f"document.getElementById('message').value = {json.dumps(text)}; document.getElementById('send').click(); true"
                )
            both = "['hello from the first page', 'hi from the second page'].every(t => Array.from(document.querySelectorAll('#log .message')).some(e => e.textContent === t))"
            for name, tab in (("first", first), ("second", second)):
                if not await tab.wait_for(both):
                    shown = await tab.evaluate("Array.from(document.querySelectorAll('#log .message')).map(e => e.textContent)")
                    print(f"the {name} page did not show both messages; it shows {shown}")
                    return 1
            shot = await first.call("Page.captureScreenshot", format="png")
            with open(screenshot_path, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
        print("OK")
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), sys.argv[2])))
