"""A notification receiver for trying notify: on this machine: it answers every POST with 200
and prints what came (the path, then the JSON body), one request after another.

    python3 examples/notifications/receiver.py 8765      # 0: any free port (printed first)

It stands in for Slack, Teams, PagerDuty or any webhook: point their url at
http://127.0.0.1:PORT/<anything>. Loopback only; the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            shown = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            shown = body.decode(errors="replace")
        print(f"--- {self.command} {self.path}\n{shown}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    do_PUT = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass  # the bodies are the log


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
        server.serve_forever()


if __name__ == "__main__":
    main()
