"""Bytes on the wire for one message: two raw WebSocket clients in a chat room, one offering permessage-deflate,
one not; a JSON model update (about 2 KiB, the shape of seed 002's live updates) is group-sent through the HTTP API.
Prints `plain <payload bytes> compressed <payload bytes> ratio <x>` after checking the compressed one inflates to
the same text.

Usage: wire_bytes.py PORT API_KEY"""
import base64
import json
import os
import socket
import struct
import sys
import urllib.request
import zlib

port, key = int(sys.argv[1]), sys.argv[2]


def connect(deflate: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    extra = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" if deflate else ""
    sock.sendall(
        (
            "GET /ws/chat/wire/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head.lower()) == deflate, head
    return sock


def read_frame(sock: socket.socket) -> tuple[bool, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            data += sock.recv(n - len(data))
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack(">H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", exactly(8))[0]
    return bool(first & 0x40), exactly(length)


plain, compressed = connect(False), connect(True)
items = [
    {"id": n, "title": f"Write the quarterly report, part {n}", "done": n % 3 == 0, "owner": {"id": 7, "username": "alice"},
     "updated_at": f"2026-12-06T10:{n:02d}:00Z", "tags": ["work", "q4"]}
    for n in range(12)
]
update = {"type": "chat.message", "message": {"model": "todo.item", "action": "update", "items": items}}
body = json.dumps(update).encode()
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/api/groups/chat_wire/send", data=body, method="POST",
    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
)
urllib.request.urlopen(request).read()
flag_plain, payload_plain = read_frame(plain)
flag_compressed, payload_compressed = read_frame(compressed)
assert not flag_plain and flag_compressed
inflated = zlib.decompressobj(-15).decompress(payload_compressed + b"\x00\x00\xff\xff")
assert inflated == payload_plain, "the compressed frame does not inflate to the same message"
print(f"plain {len(payload_plain)} compressed {len(payload_compressed)} ratio {len(payload_plain) / len(payload_compressed):.2f}")
