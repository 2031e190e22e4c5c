"""WebSocket clients of a chat room that stop reading, so that the node's outbound buffers fill.

Usage: non_readers.py PORT ROOM COUNT GO_FILE [SECONDS]

Opens COUNT connections to /ws/chat/ROOM/ with a 4 KiB receive buffer (so that what the node sends waits in
the node, not in this machine's socket buffers), prints "ready COUNT" and reads nothing until GO_FILE exists.
Then it reads every connection until its close frame or its end (at most SECONDS, 30 by default) and prints
one line per connection, in order: "close CODE REASON", "eof" (closed without a close frame) or "open".
"""
import base64
import os
import selectors
import socket
import struct
import sys
import time

port, room, count, go_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0


def connect():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect, so that the kernel does not grow it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/chat/{room}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise SystemExit("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit("no upgrade: " + head.split(b"\r\n")[0].decode())
    return sock


class Reader:
    """Parses frames from one socket as bytes arrive; `result` is set once it is done."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.result = None
        sock.setblocking(False)

    def feed(self):
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.result = "eof"
            return
        self.buffer += chunk
        buffer, start = self.buffer, 0
        while self.result is None and len(buffer) - start >= 2:
            opcode, length, offset = buffer[start] & 0x0F, buffer[start + 1] & 0x7F, start + 2
            if length == 126:
                if len(buffer) < offset + 2:
                    break
                length, offset = struct.unpack(">H", buffer[offset : offset + 2])[0], offset + 2
            elif length == 127:
                if len(buffer) < offset + 8:
                    break
                length, offset = struct.unpack(">Q", buffer[offset : offset + 8])[0], offset + 8
            if len(buffer) < offset + length:
                break
            if opcode == 8:
                payload = bytes(buffer[offset : offset + length])
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else "none"
                self.result = f"close {code} {payload[2:].decode(errors='replace')}"
            start = offset + length
        # Parsed frames leave at once, not one by one (that was quadratic in what arrived).
        del buffer[:start]


sockets = [connect() for _ in range(count)]
print("ready", len(sockets), flush=True)
while not os.path.exists(go_file):
    time.sleep(0.01)
readers = [Reader(sock) for sock in sockets]
selector = selectors.DefaultSelector()
for reader in readers:
    selector.register(reader.sock, selectors.EVENT_READ, reader)
end = time.monotonic() + seconds
while time.monotonic() < end and any(reader.result is None for reader in readers):
    for key, _ in selector.select(0.1):
        reader = key.data
        reader.feed()
        if reader.result is not None:
            selector.unregister(reader.sock)
for reader in readers:
    print(reader.result or "open", flush=True)
    reader.sock.close()
