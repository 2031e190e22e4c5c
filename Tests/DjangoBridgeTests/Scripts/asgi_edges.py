"""ASGI's edges through a node and a worker running python/tests/testproject, checked with a real client.

Usage: asgi_edges.py NODE_PORT
Prints "OK", or what differs from what Daphne gives and exits 1.
"""
import asyncio
import json
import sys

import websockets

ORIGIN = {"Origin": "http://127.0.0.1"}


async def main(port):
    base = f"ws://127.0.0.1:{port}"
    problems = []

    def check(condition, what):
        if not condition:
            problems.append(what)

    # accept(subprotocol=..., headers=...) answers the handshake; the scope is Daphne's.
    socket = await websockets.connect(base + "/ws/scope/a%20b/?q=1&r=two%20words", additional_headers=ORIGIN, subprotocols=["chat.v1", "other"])
    check(socket.subprotocol == "chat.v1", f"subprotocol {socket.subprotocol!r}")
    check(socket.response.headers.get("x-bridge") == "yes", "the accept's header")
    seen = json.loads(await socket.recv())
    check(seen["path"] == "/ws/scope/a b/" and seen["raw_path"] == "/ws/scope/a%20b/", f"paths {seen}")
    check(seen["query_string"] == "q=1&r=two%20words" and seen["kwargs"] == {"name": "a b"}, f"query and route {seen}")
    check(seen["subprotocols"] == ["chat.v1", "other"] and seen["client"][0] == "127.0.0.1", f"scope {seen}")
    # Text and bytes both ways; close with a code and reason.
    await socket.send("echo")
    check(await socket.recv() == "echo", "text echo")
    await socket.send(b"\x01\x02\x03")
    check(await socket.recv() == b"\x03\x02\x01", "bytes echo")
    # A client far ahead of its consumer (more than the node's window of 64): everything arrives, in order.
    sent = [f"slow:{i}" for i in range(300)]
    for text in sent:
        await socket.send(text)
    echoed = [await asyncio.wait_for(socket.recv(), 30) for _ in sent]
    check(echoed == sent, f"slow consumer: {len(echoed)} echoed, first difference at {next((i for i, (a, b) in enumerate(zip(echoed, sent)) if a != b), None)}")
    await socket.send("close")
    try:
        await socket.recv()
        problems.append("not closed")
    except websockets.ConnectionClosed as closed:
        check((closed.rcvd.code, closed.rcvd.reason) == (4321, "asked to"), f"close {closed.rcvd}")
    # A handler that raises: 1011.
    socket = await websockets.connect(base + "/ws/scope/x/", additional_headers=ORIGIN)
    await socket.recv()
    await socket.send("raise")
    try:
        await socket.recv()
        problems.append("not closed after raising")
    except websockets.ConnectionClosed as closed:
        check(closed.rcvd.code == 1011, f"raise closed {closed.rcvd}")
    # Refusals before accept: close -> 403, raise -> 500, a foreign origin -> 403.
    for path, headers, status in [("/ws/deny/", ORIGIN, 403), ("/ws/raise/", ORIGIN, 500), ("/ws/scope/a/", {"Origin": "https://evil.example"}, 403)]:
        try:
            await websockets.connect(base + path, additional_headers=headers)
            problems.append(f"{path} upgraded")
        except websockets.InvalidStatus as refused:
            check(refused.response.status_code == status, f"{path}: {refused.response.status_code}, not {status}")
    print("OK" if not problems else "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]))))
