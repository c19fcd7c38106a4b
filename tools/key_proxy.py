"""A loopback HTTP proxy that adds `Authorization: Bearer <key>` to every request it forwards.

AIPerf takes an API key only as a command-line flag (`--api-key`) or in a YAML config that must
then hold the whole benchmark; a flag is readable by anyone on the machine in /proc/<pid>/cmdline.
So `make loadtest` points AIPerf at this proxy (127.0.0.1, a free port) and the key stays in this
process's memory. Responses are relayed as they arrive (the server's SSE stream token by token),
so time to first token and inter-token latency are measured through one extra loopback hop.
Stdlib only: the in-cluster Job runs it from the same files.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# Headers that describe one connection, not the message (RFC 9110, section 7.6.1): never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
RELAY_CHUNK_BYTES = 64 * 1024


class KeyProxy:
    """`with KeyProxy(upstream, key) as proxy:` serves on proxy.url until the block ends."""

    def __init__(self, upstream: str, key: str, timeout_seconds: float = 900) -> None:
        target = urllib.parse.urlsplit(upstream)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise ValueError(f"{upstream!r} is not an http(s) URL")
        self.upstream = target
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # Each answer ends with its connection (no length known while streaming).
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass  # a request log would be noise in the load test's output

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host", "authorization"}
                }
                headers["Authorization"] = f"Bearer {key}"
                connection = proxy.connect(timeout_seconds)
                try:
                    path = proxy.upstream.path.rstrip("/") + self.path
                    connection.request(self.command, path, body=body, headers=headers)
                    response = connection.getresponse()
                    self.send_response_only(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP | {"content-length"}:
                            self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while chunk := response.read1(RELAY_CHUNK_BYTES):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away; nothing to answer
                finally:
                    connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def connect(self, timeout_seconds: float) -> http.client.HTTPConnection:
        host, port = self.upstream.hostname or "", self.upstream.port
        if self.upstream.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout_seconds)
        return http.client.HTTPConnection(host, port, timeout=timeout_seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KeyProxy:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
