"""A plain HTTP reverse proxy that does not pass WebSocket upgrades on, like many corporate and
old proxies: it forwards requests without their ``Upgrade`` / ``Connection`` headers, so the
origin answers a WebSocket handshake with 400. The SDK must fall back to polling / POST."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import httpx

HOP = {"connection", "upgrade", "keep-alive", "transfer-encoding", "te", "trailer",
       "proxy-authorization", "proxy-connection", "sec-websocket-key", "sec-websocket-version",
       "sec-websocket-extensions", "host", "content-length"}


class NoUpgradeProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self.upgrades_refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                wanted_upgrade = "upgrade" in self.headers.get("connection", "").lower()
                if wanted_upgrade:
                    proxy.upgrades_refused += 1
                proxy.requests[f"{self.command} {self.path}"] += 1
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                with httpx.Client(timeout=120) as c:
                    r = c.request(self.command, proxy.upstream + self.path, headers=headers, content=body)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in HOP and k.lower() != "content-encoding":
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread: Optional[threading.Thread] = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def gets_of(self, path_suffix: str) -> int:
        return sum(n for k, n in self.requests.items() if k.startswith("GET ") and k.endswith(path_suffix))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
