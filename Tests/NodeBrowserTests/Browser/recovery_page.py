"""Two demo pages in one room behind the scripted cluster's haproxy, in headless Chromium: the node of page A
is SIGKILLed, page A reconnects through haproxy and recovers, and every message page B sent meanwhile
appears on page A once, in order.

Usage: recovery_page.py HAPROXY_PORT REDIS_URL CLUSTER_DIR CHANNELS_CTL SCREENSHOT_PATH
Prints "OK" (and saves a screenshot of page A), or why not and exits 1.
"""
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from chat_page import Chromium, Tab  # noqa: E402

port, redis_url, cluster_dir, ctl, screenshot = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
MESSAGES = "Array.from(document.querySelectorAll('#log .message')).map(e => e.textContent)"


def node_of(channel):
    listing = subprocess.run([ctl, "members", "chat_lobby", "--redis", redis_url, "--json"], capture_output=True, text=True).stdout
    for member in json.loads(listing or "[]"):
        if member["channel"] == channel:
            return member["node"]
    return None


async def connected(tab):
    return await tab.wait_for("typeof client !== 'undefined' && client && client.channel && document.getElementById('status').textContent.startsWith('connected')")


async def node_when_registered(tab):
    channel = await tab.evaluate("client.channel")
    for _ in range(100):
        node = node_of(channel)
        if node:
            return node
        await asyncio.sleep(0.1)
    return None


async def say(tab, text):
    await tab.evaluate(f"document.getElementById('message').value = {json.dumps(text)}; document.getElementById('send').click(); true")


async def main():
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    debug_port = browser.debug_port
    page_url = f"http://127.0.0.1:{port}/"
    try:
        first = await browser.open_tab(page_url)
        async with Tab(first["webSocketDebuggerUrl"]) as a:
            if not await connected(a):
                print("page A did not connect")
                return 1
            node_a = await node_when_registered(a)
            # Page B on another node, so that it keeps sending while page A's node is down.
            for _ in range(12):
                second = await browser.open_tab(page_url)
                b = Tab(second["webSocketDebuggerUrl"])
                await b.__aenter__()
                if not await connected(b):
                    print("page B did not connect")
                    return 1
                node_b = await node_when_registered(b)
                if node_b and node_b != node_a:
                    break
                await b.__aexit__()
                urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/close/{second['id']}", timeout=2)
            else:
                print(f"page B kept landing on {node_a}")
                return 1
            await say(b, "before")
            if not await a.wait_for(f"{MESSAGES}.includes('before')"):
                print("page A did not get the first message")
                return 1
            with open(os.path.join(cluster_dir, "run", f"{node_a}.pid")) as file:
                os.kill(int(file.read().strip()), signal.SIGKILL)
            if not await a.wait_for("!document.getElementById('status').textContent.startsWith('connected')", timeout=10):
                print("page A did not notice its node died")
                return 1
            sent = [f"while away {index}" for index in range(5)]
            for text in sent:
                await say(b, text)
                await asyncio.sleep(0.1)
            if not await a.wait_for(f"{json.dumps(sent)}.every(t => {MESSAGES}.includes(t))", timeout=30):
                status = await a.evaluate("document.getElementById('status').textContent")
                print(f"page A shows {await a.evaluate(MESSAGES)}; status {status}")
                return 1
            shown = await a.evaluate(MESSAGES)
            if shown != ["before"] + sent:
                print(f"page A shows {shown}, not each message once in order")
                return 1
            shot = await a.call("Page.captureScreenshot", format="png")
            with open(screenshot, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
            await b.__aexit__()
        print("OK")
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
