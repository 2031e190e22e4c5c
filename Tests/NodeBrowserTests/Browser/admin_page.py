"""Drives the admin page (/admin) in headless Chromium through the DevTools protocol.

Usage: admin_page.py NODE_PORT API_KEY SCREENSHOT_PATH
Signs in with the key and waits for the nodes table; prints "SIGNED_IN" (the caller then connects a chat
client to room "admin" on a node). Waits for group chat_admin to appear in the groups table, opens it, waits
for its member, sends a chat message from the page's form and prints "SENT" (the caller checks its client
got it). Waits for the message in the page's recent history, saves a screenshot and prints "OK". On any
failure prints why and exits 1.
"""
import asyncio
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_page import Chromium, Tab  # noqa: E402

MESSAGE = "hello from the admin page"


async def main(node_port, key, screenshot_path):
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error, flush=True)
        return 1
    try:
        target = await browser.open_tab(f"http://127.0.0.1:{node_port}/admin")
        async with Tab(target["webSocketDebuggerUrl"]) as tab:
            await tab.call("Emulation.setDeviceMetricsOverride", width=1280, height=860, deviceScaleFactor=1, mobile=False)
            # The button is in the HTML; its handler comes with admin.js, which runs before the load event.
            if not await tab.wait_for("!!document.getElementById('signin-button') && document.readyState === 'complete'"):
                print("the admin page did not load", flush=True)
                return 1
            # A wrong key first: the page says why and stays signed out.
            await tab.evaluate("document.getElementById('key').value = 'not-the-key-not-the-key'; document.getElementById('signin-button').click(); true")
            if not await tab.wait_for("document.getElementById('signin-error').textContent.includes('API key')"):
                print("a wrong key was not refused: " + str(await tab.evaluate("document.getElementById('signin-error').textContent")), flush=True)
                return 1
            await tab.evaluate(f"document.getElementById('key').value = {json.dumps(key)}; document.getElementById('signin-button').click(); true")
            if not await tab.wait_for("document.querySelectorAll('#nodes tbody tr[data-node]').length >= 2 && document.getElementById('status').textContent === 'live'"):
                print("signed in, but the nodes table did not fill: " + str(await tab.evaluate("document.getElementById('nodes').innerText")), flush=True)
                return 1
            print("SIGNED_IN", flush=True)
            row = "document.querySelector('#groups tr[data-group=\"chat_admin\"]')"
            if not await tab.wait_for(f"!!{row}", timeout=20):
                print("group chat_admin did not appear: " + str(await tab.evaluate("document.getElementById('groups').innerText")), flush=True)
                return 1
            await tab.evaluate(f"{row}.click(); true")
            if not await tab.wait_for("document.querySelectorAll('#members tbody tr[data-channel]').length === 1"):
                print("the group's member did not show: " + str(await tab.evaluate("document.getElementById('group-detail').innerText")), flush=True)
                return 1
            body = json.dumps({"type": "chat.message", "message": MESSAGE})
            await tab.evaluate(f"document.getElementById('send-body').value = {json.dumps(body)}; document.getElementById('send').click(); true")
            if not await tab.wait_for("document.getElementById('send-result').textContent.startsWith('sent')"):
                print("sending failed: " + str(await tab.evaluate("document.getElementById('send-result').textContent")), flush=True)
                return 1
            print("SENT", flush=True)
            shown = f"Array.from(document.querySelectorAll('#history li.history-message')).some(li => li.textContent.includes({json.dumps(MESSAGE)}))"
            if not await tab.wait_for(shown):
                print("the message did not show in the history: " + str(await tab.evaluate("document.getElementById('history').innerText")), flush=True)
                return 1
            shot = await tab.call("Page.captureScreenshot", format="png")
            with open(screenshot_path, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
        print("OK", flush=True)
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3])))
