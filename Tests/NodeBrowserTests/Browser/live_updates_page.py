"""Drives the live-updates example's page (examples/django-live-updates) in headless Chromium.

Usage: live_updates_page.py DJANGO_URL
Opens the page, waits until its WebSocket to the node is connected, then changes an item through the REST
API as another client would: created, marked done, deleted; each change must show on the page without a
reload. Prints "OK", or why not and exits 1.
"""
import asyncio
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_page import Chromium, Tab  # noqa: E402


def rest(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


async def main(django_url):
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    try:
        target = await browser.open_tab(django_url)
        async with Tab(target["webSocketDebuggerUrl"]) as page:
            if not await page.wait_for("document.getElementById('status').dataset.state === 'connected'"):
                print("the page did not connect: " + str(await page.evaluate("document.getElementById('status').textContent")))
                return 1
            api = django_url.rstrip("/") + "/api/items/"
            created = rest("POST", api, {"name": "made elsewhere"})
            row = f"document.querySelector('#items li[data-pk=\"{created['id']}\"]')"
            steps = [
                ("created", lambda: None, f"{row} && {row}.querySelector('.name').textContent === 'made elsewhere'"),
                ("updated", lambda: rest("PATCH", f"{api}{created['id']}/", {"done": True}), f"{row} && {row}.dataset.done === 'true'"),
                ("deleted", lambda: rest("DELETE", f"{api}{created['id']}/"), f"!{row}"),
            ]
            for name, change, shown in steps:
                change()
                if not await page.wait_for(shown):
                    print(f"the page did not show the item {name}; list: " + str(await page.evaluate("document.getElementById('items').innerHTML")))
                    return 1
        print("OK")
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
