"""A loopback server that answers each path as a test scripts it, down to the bytes: an HTTP reply,
bytes that are not HTTP, a hang-up, a stall, a reply trickled a byte at a time. `FakeLlamaServer`
starts with the answers the pinned llama-server gives for a stack config (run with --no-slots, as
the stack runs it), so a test changes one route and sees what a tool makes of it."""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any

from core import rules
from core.config import StackConfig

# What a web server or a captive portal answers where llama-server was expected.
NOT_LLAMA = "<html><body>" + "page of a proxy that is not llama-server " * 2000 + "</body></html>"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Reply:
    """What one path answers. `raw` replaces the whole HTTP reply; `hang_up` closes without a byte;
    `stall` sends nothing until the server closes; `trickle_seconds` spaces the bytes of the reply."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    raw: bytes | None = None
    hang_up: bool = False
    stall: bool = False
    trickle_seconds: float = 0.0

    @classmethod
    def json(cls, status: int, doc: Any) -> Reply:
        return cls(status=status, body=json.dumps(doc).encode())

    def wire(self) -> bytes:
        if self.raw is not None:
            return self.raw
        head = (
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + self.body


def llama_server_answers(c: StackConfig) -> dict[str, Reply]:
    """What llama-server of the pinned release answers for this config, with the key, started with --no-slots."""
    s = c.server
    return {
        "/health": Reply.json(200, {"status": "ok"}),
        "/props": Reply.json(
            200,
            {
                "total_slots": s.parallel,
                "default_generation_settings": {"n_ctx": rules.slot_tokens(c), "temperature": 0.8},
                "model_alias": s.alias,
                "modalities": {"vision": True, "audio": False},
                "build_info": "b11434-0000000",
            },
        ),
        "/slots": Reply.json(
            501,
            {
                "error": {
                    "code": 501,
                    "message": "This server does not support slots endpoint.",
                    "type": "not_supported_error",
                }
            },
        ),
        "/metrics": Reply(
            body=(
                b"# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
                b"# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 0\n"
                b"llamacpp:tokens_predicted_total 0\nllamacpp:requests_processing 0\nllamacpp:requests_deferred 0\n"
            ),
            content_type="text/plain; version=0.0.4",
        ),
        "/v1/chat/completions": Reply.json(
            200,
            {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "A gradient."}}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 8, "total_tokens": 308},
            },
        ),
    }


@dataclass
class RawServer:
    routes: dict[str, Reply] = field(default_factory=dict)  # path (without query) -> reply; else 404
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)  # method, path, headers, body

    def __post_init__(self) -> None:
        server = self
        self.closed = threading.Event()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(65536).decode("latin-1")
                parts = line.split()
                if len(parts) < 2:
                    return
                headers = {}
                while (header := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = parts[1].split("?")[0]
                server.requests.append((parts[0], path, headers, body))
                reply = server.routes.get(path, Reply.json(404, {"error": {"code": 404, "message": "File Not Found"}}))
                try:
                    if reply.hang_up:
                        return
                    if reply.stall:
                        server.closed.wait(120)
                        return
                    data = reply.wire()
                    if reply.trickle_seconds:
                        for i in range(len(data)):
                            if server.closed.wait(reply.trickle_seconds):
                                return
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                        return
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up first, as a timeout test wants

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.tcp.server_address[1]}"

    def close(self) -> None:
        self.closed.set()
        self.tcp.shutdown()
        self.tcp.server_close()


def fake_llama_server(c: StackConfig, **changed: Reply) -> RawServer:
    """llama-server's answers for `c`, with routes changed by path: fake_llama_server(c, **{"/props": Reply(...)})."""
    return RawServer(routes={**llama_server_answers(c), **changed})
