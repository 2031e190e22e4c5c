"""Python `websockets` (permessage-deflate on by default) against two nodes: prints one line per check.

Usage: deflate_client.py PORT_A PORT_B"""
import asyncio
import json
import sys

import websockets


async def main(port_a: int, port_b: int) -> None:
    room = "/ws/chat/deflate/"
    async with websockets.connect(f"ws://127.0.0.1:{port_a}{room}") as a, websockets.connect(f"ws://127.0.0.1:{port_b}{room}") as b:
        names = [type(extension).__name__ for extension in a.protocol.extensions]
        print("negotiated", "PerMessageDeflate" in names, flush=True)
        long = "compress me " * 300
        await a.send(json.dumps({"message": long}))
        got_a, got_b = json.loads(await a.recv()), json.loads(await b.recv())
        print("long", got_a["message"] == long and got_b["message"] == long, flush=True)
        await b.send(json.dumps({"message": "short"}))
        got_a, got_b = json.loads(await a.recv()), json.loads(await b.recv())
        print("short", got_a["message"] == "short" and got_b["message"] == "short", flush=True)


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
