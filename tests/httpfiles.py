"""Loopback HTTP servers for tests.

`FileServer`: byte ranges (for resumed downloads; 416 past the end, as real servers answer), a
request log, a switch that cuts a response short, as a dropped connection would, one that stalls
it, one that trickles it, one that announces a false length, redirects (to addresses with query
strings, as signed CDN URLs are), TLS, bodies of unknown length (chunked, or ended by closing the
connection), a server that answers every range with 416, and a count of clients that hung up
before the end of a body.
`ScriptedServer`: answers every GET with a status, a body and a delay that a test sets.
`RawServer`: answers every connection with the same bytes, HTTP or not, and closes it.
`pids_with_in_argv`: which processes show a secret in their argument list (/proc/PID/cmdline).
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal


def pids_with_in_argv(secret: str) -> list[str]:
    """Processes whose argument list holds `secret`: anyone on the node can read it in /proc."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if secret.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass  # gone, or not ours to read
    return found


@dataclass
class FileServer:
    root: Path
    requests: list[dict[str, str]] = field(default_factory=list)
    cut_after: int | None = None  # bytes sent before the connection drops, once
    ranges: bool = True
    stall_after: int | None = None  # bytes sent before every response goes silent (until close)
    trickle_seconds: float = 0.0  # how long each response body takes to send, in 16 slices
    announce_length: int | None = None  # a Content-Length that the body does not keep to
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    tls: ssl.SSLContext | None = None  # serve https with this context
    # How a body's end is known: its Content-Length, chunked coding, or the connection closing.
    framing: Literal["length", "chunked", "close"] = "length"
    refuse_ranges: bool = False  # answer every Range with 416, as a cache that lost the object's length does
    hangups: int = 0  # responses the client stopped reading before their end

    def __post_init__(self) -> None:
        server = self
        self.closed = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if server.framing == "chunked":
                    self.protocol_version = "HTTP/1.1"  # chunked coding is HTTP/1.1's (RFC 9112 7.1)
                path = self.path.split("?", 1)[0]  # a signed URL's query names no file
                location = server.redirects.get(self.path, server.redirects.get(path))
                if location is not None:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                file = server.root / path.lstrip("/")
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and server.ranges and (server.refuse_ranges or int(match.group(1)) >= len(data)):
                    self.send_response(416)  # RFC 9110 15.5.17: no byte of the range exists
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if match and server.ranges:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                    self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                body = data[start:]
                if server.framing != "length":
                    self.send_unframed(body)
                    return
                length = len(body) if server.announce_length is None else server.announce_length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if server.stall_after is not None:
                    self.wfile.write(body[: server.stall_after])
                    self.wfile.flush()
                    server.closed.wait(60)
                    return
                if server.trickle_seconds:
                    step = -(-len(body) // 16)
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i : i + step])
                        self.wfile.flush()
                        time.sleep(server.trickle_seconds / 16)
                    return
                if server.cut_after is not None:
                    limit, server.cut_after = server.cut_after, None
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def send_unframed(self, body: bytes) -> None:
                """The body without a length up front: curl learns its size only at its end."""
                self.send_header("Connection", "close")
                if server.framing == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                step = 64 * 1024
                try:
                    for i in range(0, len(body), step):
                        piece = body[i : i + step]
                        if server.framing == "chunked":
                            piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                        self.wfile.write(piece)
                    if server.framing == "chunked":
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.hangups += 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """One JSON answer with its length, as the fake APIs (GitHub's, ARM's, Kubernetes') send theirs."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class ScriptedServer:
    """Answers every GET and POST with `status` and `body` after `delay` seconds; logs each
    request's method, path, body and headers (lower-cased names), and calls `seen()` while the
    request is open (the client is still running then)."""

    status: int = 200
    body: str = ""
    delay: float = 0.0
    content_type: str = "text/plain; version=0.0.4"
    requests: list[dict[str, str]] = field(default_factory=list)

    def seen(self) -> None:
        """Called for each request before the answer; a subclass notes what it needs."""

    def __post_init__(self) -> None:
        server = self
        self.closed = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                server.seen()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append({**headers, "method": self.command, "path": self.path, "body": body})
                if server.delay and server.closed.wait(server.delay):
                    return
                data = server.body.encode()
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", server.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first, as a timeout test wants

            do_GET = answer
            do_POST = answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class RawServer:
    """Answers every connection with `reply` (any bytes: a reply that is not HTTP) and closes it."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                self.connections += 1
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request head
                    conn.sendall(self.reply)
                except OSError:
                    pass  # the client gave up first

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/{name}"

    def close(self) -> None:
        self.sock.close()
