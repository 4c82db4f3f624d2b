"""A webhook receiver for the webhook tests (runtime/tests/webhooks.rs).

It checks every request's Standard Webhooks signature with the reference PyPI package
`standardwebhooks` (an implementation independent of SCL's signer), can inject failures,
and records what it saw as JSON lines:

  webhook_receiver.py --record FILE [--secret whsec_...] [--fail-first N] [--status CODE]

- `--fail-first N`: answer 503 (with `Retry-After: 1`) to the first N attempts of each
  `webhook-id`, then 200.
- `--status CODE`: answer CODE to every request (after the signature check).
- A request whose signature does not verify is answered 401 and recorded as rejected.

It listens on a free loopback port and prints `LISTENING <port>` once ready. Every request
appends one line to FILE: {"id", "verified", "answered", "type", "event", "headers"}.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", required=True)
    parser.add_argument("--secret")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--status", type=int)
    options = parser.parse_args()
    verifier = Webhook(options.secret) if options.secret else None
    attempts = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            webhook_id = headers.get("webhook-id", "")
            verified = False
            event = None
            if verifier is not None:
                try:
                    event = verifier.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
            else:
                event = json.loads(body)
            with lock:
                seen = attempts.get(webhook_id, 0) + 1
                attempts[webhook_id] = seen
            extra = {}
            if verifier is not None and not verified:
                answer, text = 401, b"bad signature"
            elif options.status is not None:
                answer, text = options.status, b"rejected by the test receiver"
            elif seen <= options.fail_first:
                answer, text = 503, b"try again later"
                extra["Retry-After"] = "1"
            else:
                # Longer than the 1 KiB the delivery history keeps.
                answer, text = 200, json.dumps({"ok": True, "pad": "x" * 3000}).encode()
            line = {
                "id": webhook_id,
                "verified": verified,
                "answered": answer,
                "type": (event or {}).get("type"),
                "event": event,
                "headers": headers,
            }
            with lock:
                with open(options.record, "a", encoding="utf-8") as record:
                    record.write(json.dumps(line) + "\n")
            self.send_response(answer)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
