"""Server-sent events in headless Chromium (Debian's chromium), driven through the DevTools protocol.

Usage: event_stream_page.py PORT COUNT

Opens http://127.0.0.1:PORT/ (the cluster's haproxy) and, in that page, three readers of room "browser":
- "plain": a bare `EventSource("/ws/chat/browser/")`, reconnecting by itself with `Last-Event-ID`;
- "sse": `new ChannelsClient(path, {transport: "sse"})` from the node's /channels.js;
- "fallback": `new ChannelsClient(path, {receiveOnly: true})` in a page whose WebSocket never opens (a proxy that
  blocks WebSockets, played by a stand-in WebSocket class), so that it falls back to server-sent events.
Prints "ready CHANNEL" once all three are open (the plain reader's channel, from its presence event), then waits until each holds COUNT messages (60 s at most) and
prints one JSON line: {"plain": {...}, "sse": {...}, "fallback": {...}}, each with the messages in the order
received, how many times the stream opened, and the last event id or transport.
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_page import Chromium, Tab  # noqa: E402

READERS = r"""
(() => {
  window.readers = {};
  const path = "/ws/chat/browser/";
  const plain = { got: [], opens: 0, lastId: "" };
  const source = new EventSource(path + "?presence=1");
  source.addEventListener("presence", (event) => { const frame = JSON.parse(event.data); if (frame.type === "presence") plain.channel = frame.channel; });
  source.onopen = () => { plain.opens += 1; };
  source.onmessage = (event) => { plain.got.push(JSON.parse(event.data).message); plain.lastId = event.lastEventId; };
  source.addEventListener("recovered", () => { plain.recovered = (plain.recovered || 0) + 1; });
  window.readers.plain = plain;

  const sse = { got: [], opens: 0 };
  const client = new ChannelsClient(path, { transport: "sse", minDelay: 100, maxDelay: 1000 });
  client.addEventListener("message", (event) => sse.got.push(event.detail.message));
  client.addEventListener("state", (event) => { if (event.detail === "open") sse.opens += 1; });
  client.connect();
  window.readers.sse = sse;
  window.readers.sseClient = client;

  // A WebSocket to the room that never opens, as behind a proxy that refuses the upgrade. The demo page's own
  // chat socket (another room) stays real: counted here, its reconnects after the node kill were taken for
  // the fallback reader's.
  const RealWebSocket = window.WebSocket;
  window.WebSocket = class {
    static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
    constructor(url, protocols) {
      if (!new URL(url).pathname.startsWith(path)) return new RealWebSocket(url, protocols);
      window.refusedSockets = (window.refusedSockets || 0) + 1;
      setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: "" }), 5);
    }
    close() {}
    send() {}
  };
  const fallback = { got: [], opens: 0 };
  const blocked = new ChannelsClient(path, { receiveOnly: true, minDelay: 50, maxDelay: 200 });
  blocked.addEventListener("message", (event) => fallback.got.push(event.detail.message));
  blocked.addEventListener("state", (event) => { if (event.detail === "open") fallback.opens += 1; });
  blocked.connect();
  window.readers.fallback = fallback;
  window.readers.fallbackClient = blocked;
  return true;
})()
"""


async def main(port, count):
    try:
        browser = Chromium().__enter__()
    except RuntimeError as error:
        print(error)
        return 1
    try:
        target = await browser.open_tab(f"http://127.0.0.1:{port}/")
        async with Tab(target["webSocketDebuggerUrl"]) as tab:
            if not await tab.wait_for("typeof ChannelsClient === 'function'"):
                print("the page did not load /channels.js")
                return 1
            await tab.evaluate(READERS)
            opened = ("readers.plain.opens >= 1 && readers.plain.recovered >= 1 && readers.plain.channel && readers.sse.opens >= 1 && "
                      "readers.fallback.opens >= 1 && readers.fallbackClient.transport === 'sse'")
            if not await tab.wait_for(opened, timeout=20):
                state = await tab.evaluate("JSON.stringify({plain: readers.plain, sse: readers.sse, fallback: readers.fallback, "
                                           "transport: readers.fallbackClient.transport, refused: window.refusedSockets})")
                print(f"the readers did not all open: {state}")
                return 1
            print("ready " + await tab.evaluate("readers.plain.channel"), flush=True)
            done = f"['plain', 'sse', 'fallback'].every(name => readers[name].got.length >= {count})"
            await tab.wait_for(done, timeout=60)
            # A moment more: a copy delivered twice would show now.
            await asyncio.sleep(0.5)
            result = await tab.evaluate(
                "JSON.stringify({plain: readers.plain, sse: readers.sse, fallback: Object.assign({}, readers.fallback, "
                "{transport: readers.fallbackClient.transport, refusedSockets: window.refusedSockets})})"
            )
            print(result, flush=True)
        return 0
    finally:
        browser.__exit__()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]))))
