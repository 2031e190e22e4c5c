"""A webhook receiver for scripts/bench-users: answers 200, checks each signature, and prints
`events <total> posts <n> bad_signatures <n> first <unix s> last <unix s>` once a second while it counts.

Usage: webhook_counter.py SECRET_FILE PORT_FILE (writes the port it listens on to PORT_FILE)."""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret = open(sys.argv[1], "rb").read().strip()
lock = threading.Lock()
totals = {"events": 0, "posts": 0, "bad": 0, "first": 0.0, "last": 0.0}


class Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        good = hmac.compare_digest(expected, self.headers.get("X-Channels-Signature") or "")
        count = len(json.loads(body)["events"])
        now = time.time()
        with lock:
            totals["events"] += count
            totals["posts"] += 1
            totals["bad"] += 0 if good else 1
            totals["first"] = totals["first"] or now
            totals["last"] = now
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    time.sleep(1)
    with lock:
        print(f"events {totals['events']} posts {totals['posts']} bad_signatures {totals['bad']} first {totals['first']:.3f} last {totals['last']:.3f}", flush=True)
