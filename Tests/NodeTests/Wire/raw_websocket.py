"""Speaks WebSocket by hand to a node, to send what well-behaved clients never send.

Usage: raw_websocket.py PORT CASE, where CASE is missing-key, version-12, duplicate-key (prints the HTTP
status and whether Sec-WebSocket-Version: 13 was in the answer), unmasked (prints the close code the node
answers an unmasked client frame with), binary (prints the frame the chat endpoint answers a binary frame with),
fragments and fragments-deflate (one message in several frames, plain or compressed: prints the echo),
zip-bomb (offers permessage-deflate and sends 64 KiB that inflate to 16 MiB: prints the close code) or rsv1-plain
(a compressed-looking frame without the extension: prints the close code).
"""
import base64
import os
import socket
import struct
import sys

port, case = int(sys.argv[1]), sys.argv[2]


def closed_within(sock, seconds):
    """Whether the node closes the socket within `seconds` (what it sent first is skipped)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def http_status(raw):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(raw)
    answer = b""
    try:
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    except ConnectionResetError:
        pass
    return answer.split(b" ")[1].decode() if answer.count(b" ") else "none"


if case == "silent":
    # Sends nothing: closed after the handshake timeout.
    print("closed" if closed_within(socket.create_connection(("127.0.0.1", port)), 5) else "open")
    sys.exit(0)
if case == "trickle":
    # Headers a byte at a time, slower than the timeout allows.
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.5)
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            sock.sendall(bytes([byte]))
            try:
                if sock.recv(1) == b"":
                    print("closed")
                    sys.exit(0)
            except (socket.timeout, TimeoutError):
                pass
    except (BrokenPipeError, ConnectionResetError):
        print("closed")
        sys.exit(0)
    print("open")
    sys.exit(0)
if case == "huge-headers":
    print(http_status(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"))
    sys.exit(0)
if case == "nul-path":
    print(http_status(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"))
    sys.exit(0)
if case.startswith("flood-"):
    # Opens N sockets and holds them, then for S seconds keeps connecting (a new socket every 10 ms, closed
    # again a second later): a node out of descriptors always has connections waiting to be accepted.
    _, count, seconds = case.split("-")
    import time
    held = []
    for _ in range(int(count)):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            pass
    print("holding", len(held), flush=True)
    churn = []
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        try:
            churn.append((time.monotonic(), socket.create_connection(("127.0.0.1", port), timeout=0.2)))
        except OSError:
            pass
        while churn and churn[0][0] < time.monotonic() - 1:
            churn.pop(0)[1].close()
        time.sleep(0.01)
    for _, sock in churn:
        sock.close()
    for sock in held:
        sock.close()
    print("done", flush=True)
    sys.exit(0)
if case.startswith("pending-"):
    # Holds N silent sockets, then checks that one more is closed at once and /healthz still answers.
    count = int(case.split("-")[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    extra = socket.create_connection(("127.0.0.1", port))
    refused = closed_within(extra, 2)
    for sock in held:
        sock.close()
    # The node frees their places once it has seen them close.
    import time
    time.sleep(1)
    print("refused" if refused else "held", http_status(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
    sys.exit(0)
key = base64.b64encode(os.urandom(16)).decode()
headers = [("Host", "127.0.0.1"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
if case == "missing-key":
    headers += [("Sec-WebSocket-Version", "13")]
elif case == "version-12":
    headers += [("Sec-WebSocket-Version", "12"), ("Sec-WebSocket-Key", key)]
elif case == "duplicate-key":
    headers += [("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Key", key)]
else:
    headers += [("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key)]
if case in ("zip-bomb", "fragments-deflate"):
    headers += [("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover")]

sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(("GET /ws/chat/lobby/ HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode())
buffer = b""
while b"\r\n\r\n" not in buffer:
    chunk = sock.recv(4096)
    if not chunk:
        break
    buffer += chunk
head, _, buffer = buffer.partition(b"\r\n\r\n")
head = head.decode()
status = head.split(" ")[1] if " " in head else "none"
if case in ("missing-key", "version-12", "duplicate-key"):
    print(status, "version13" if "sec-websocket-version: 13" in head.lower() else "-")
    sys.exit(0)
if status != "101":
    print("no upgrade", status)
    sys.exit(1)


def read_exactly(count):
    global buffer
    while len(buffer) < count:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("closed")
        buffer += chunk
    data, buffer = buffer[:count], buffer[count:]
    return data


def read_frame():
    first, second = read_exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack(">H", read_exactly(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", read_exactly(8))[0]
    return first & 0x0F, read_exactly(length)


def frame(opcode, payload, masked):
    header = bytes([0x80 | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def masked_frame(opcode, payload, rsv1=False, fin=True):
    length = len(payload)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 65536:
        header = bytes([first, 0x80 | 126]) + struct.pack(">H", length)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack(">Q", length)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def deflated(data):
    import zlib
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]


if case == "zip-bomb":
    if "permessage-deflate" not in head.lower():
        print("not negotiated")
        sys.exit(1)
    sock.sendall(masked_frame(1, deflated(b" " * (16 << 20)), rsv1=True))
elif case == "fragments":
    # One message in three frames, each masked with its own key.
    sock.sendall(masked_frame(1, b'{"message": "frag', fin=False) + masked_frame(0, b"men", fin=False) + masked_frame(0, b'ted"}'))
elif case == "fragments-deflate":
    body = deflated(b'{"message": "fragmented and compressed"}')
    sock.sendall(masked_frame(1, body[:5], rsv1=True, fin=False) + masked_frame(0, body[5:]))
elif case == "rsv1-plain":
    sock.sendall(masked_frame(1, deflated(b'{"message": "hi"}'), rsv1=True))
elif case == "unmasked":
    sock.sendall(frame(1, b'{"message": "unmasked"}', masked=False))
elif case == "binary":
    sock.sendall(frame(2, b"\x01\x02\x03", masked=True))
while True:
    opcode, payload = read_frame()
    if opcode == 8:
        print("close", struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else "none")
        break
    if opcode == 1:
        print("text", payload.decode())
        if case in ("binary", "fragments", "fragments-deflate"):
            break
