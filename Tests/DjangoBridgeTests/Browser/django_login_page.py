"""Drives examples/django-chat in headless Chromium behind haproxy: Django's login form, then the chat page.

Usage: django_login_page.py SITE_URL USERNAME PASSWORD
Logs in through Django's own login view (the form a user fills), lands on the chat page, whose WebSockets go
to the swift-channels nodes with the session cookie: /ws/whoami/ must answer the user's name (the worker's
AuthMiddlewareStack read the session), and a chat message must come back through the room. Prints "OK", or
why not and exits 1.
"""
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "NodeBrowserTests", "Browser"))
from chat_page import Chromium, Tab  # noqa: E402


async def main(site, username, password):
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    try:
        target = await browser.open_tab(site.rstrip("/") + "/accounts/login/")
        async with Tab(target["webSocketDebuggerUrl"]) as page:
            if not await page.wait_for("document.getElementById('id_username') !== null"):
                print("the login form did not load")
                return 1
            await page.evaluate(
                f"document.getElementById('id_username').value = {json.dumps(username)};"
                f"document.getElementById('id_password').value = {json.dumps(password)};"
                "document.getElementById('login').click(); true"
            )
            if not await page.wait_for("document.getElementById('who') && document.getElementById('who').dataset.state === 'answered'", timeout=20):
                print("the chat page did not hear from /ws/whoami/: " + str(await page.evaluate("document.body && document.body.innerText")))
                return 1
            who = await page.evaluate("document.getElementById('who').textContent")
            if who != username:
                print(f"/ws/whoami/ answered {who!r}, not {username!r}: the session cookie did not log the WebSocket in")
                return 1
            if not await page.wait_for("document.getElementById('status').dataset.state === 'connected'"):
                print("the chat socket did not open: " + str(await page.evaluate("document.getElementById('status').textContent")))
                return 1
            text = "hello from chromium"
            await page.evaluate(f"document.getElementById('message').value = {json.dumps(text)}; document.getElementById('send').click(); true")
            if not await page.wait_for(f"Array.from(document.querySelectorAll('#log li')).some(e => e.textContent === {json.dumps(text)})"):
                print("the message did not come back: " + str(await page.evaluate("document.getElementById('log').innerText")))
                return 1
        print("OK")
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
