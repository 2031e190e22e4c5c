"""examples/django-chat's /live/ page (the nodes' /channels.js on a bridged route) in headless Chromium behind
haproxy, while the worker serving it is killed.

Usage: channels_js_page.py SITE_URL
Opens /live/, prints "CONNECTED" once its socket is open (the test then starts a second worker and kills the
page's). Once the page is closed with 1012, another client (on the surviving worker) says a message every
50 ms into the room through the same ChatConsumer; the page must reconnect, recover (the fast path numbered
those messages in the room's history) and show every one exactly once, in order. Prints "OK", or why not and
exits 1.
"""
import asyncio
import json
import os
import sys

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "NodeBrowserTests", "Browser"))
from chat_page import Chromium, Tab  # noqa: E402

LOG = "Array.from(document.querySelectorAll('#log .message')).map(e => e.textContent)"


async def main(site):
    site = site.rstrip("/")
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    announced = []
    stop = asyncio.Event()

    async def announcer():
        url = site.replace("http://", "ws://") + "/ws/chat/lobby/"
        async with websockets.connect(url, additional_headers={"Origin": "http://127.0.0.1"}) as other:
            while not stop.is_set():
                text = f"m{len(announced)}"
                await other.send(json.dumps({"message": text}))
                announced.append(text)
                await asyncio.sleep(0.05)

    try:
        target = await browser.open_tab(site + "/live/?room=lobby")
        async with Tab(target["webSocketDebuggerUrl"]) as page:
            if not await page.wait_for("typeof client !== 'undefined' && client.state === 'open' && client.channel !== null", timeout=20):
                print("the page did not connect: " + str(await page.evaluate("document.body && document.body.innerText")))
                return 1
            print("CONNECTED", flush=True)
            if not await page.wait_for("document.getElementById('closes').textContent.includes('1012')", timeout=30):
                print("the page was not closed with 1012: closes " + str(await page.evaluate("document.getElementById('closes').textContent")))
                return 1
            task = asyncio.ensure_future(announcer())
            if not await page.wait_for("client.state === 'open'", timeout=20):
                print("the page did not reconnect: " + str(await page.evaluate("client.state")))
                return 1
            await asyncio.sleep(1.0)
            stop.set()
            await task
            expected = json.dumps(announced, separators=(",", ":"))
            if not await page.wait_for(f"JSON.stringify({LOG}) === {json.dumps(expected)}", timeout=10):
                print(f"the page shows {await page.evaluate(LOG)}, not {announced}")
                return 1
            recovered = await page.evaluate("Number(document.getElementById('recovered').textContent)")
            unrecoverable = await page.evaluate("Number(document.getElementById('unrecoverable').textContent)")
            if recovered < 1 or unrecoverable != 0:
                print(f"recovered {recovered} times, unrecoverable {unrecoverable} times")
                return 1
        print("OK")
        return 0
    finally:
        stop.set()
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
