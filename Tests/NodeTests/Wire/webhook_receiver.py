"""A webhook receiver for tests: prints `listening <port>`, then one JSON line per POST:
{"status": <what it answered>, "valid": <signature checks out>, "body": <the parsed body>}.

Usage: webhook_receiver.py SECRET [STATUS,STATUS,...]  (answers those statuses in turn, then 200)."""
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret = sys.argv[1].encode()
statuses = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 and sys.argv[2] else []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        status = statuses.pop(0) if statuses else 200
        valid = hmac.compare_digest(expected, self.headers.get("X-Channels-Signature") or "")
        print(json.dumps({"status": status, "valid": valid, "body": json.loads(body)}), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
