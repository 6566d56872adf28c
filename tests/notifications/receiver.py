"""A webhook receiver for the tests, run as its own process: `python receiver.py PORT LOG SECRET...`.

Every request is verified with the `standardwebhooks` library against each secret given; one
JSON line per request goes to LOG: the webhook id, the event, which secrets verified, the time.
`RECEIVER_STATUS` (default 200) and `RECEIVER_DELAY` (seconds) shape the answers."""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, LOG, SECRETS = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
STATUS = int(os.environ.get("RECEIVER_STATUS", "200"))
DELAY = float(os.environ.get("RECEIVER_DELAY", "0"))
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        verified = []
        for index, secret in enumerate(SECRETS):
            try:
                Webhook(secret).verify(body, dict(self.headers.items()))
                verified.append(index)
            except WebhookVerificationError:
                pass
        if DELAY:
            time.sleep(DELAY)
        line = {
            "webhook_id": self.headers.get("webhook-id"),
            "verified": verified,
            "event": json.loads(body) if verified else None,
            "at": time.time(),
        }
        with _lock, open(LOG, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        status = STATUS if verified else 400
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print("receiver ready", flush=True)
    server.serve_forever()
