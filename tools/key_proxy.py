"""A loopback HTTP proxy that adds `Authorization: Bearer <key>` to every request it forwards.

AIPerf takes an API key only as a command-line flag (`--api-key`) or in a YAML config that must
then hold the whole benchmark; a flag is readable by anyone on the machine in /proc/<pid>/cmdline.
So `make loadtest` points AIPerf at this proxy (127.0.0.1, a free port) and the key stays in this
process's memory. Responses are relayed as they arrive (the server's SSE stream token by token),
so time to first token and inter-token latency are measured through one extra loopback hop.
Stdlib only: the in-cluster Job runs it from the same files.

Any local user can connect to a loopback port, so the proxy serves only under a random path that
this run makes (`proxy.url` ends with it; AIPerf keeps a base URL's path and appends its own,
aiperf/transports/aiohttp_transport.py get_url): a request without it gets 403 and forwards
nothing. The caller keeps the URL out of argument lists (tools/loadtest.py hands it to AIPerf on
stdin). A request that is not plain origin-form HTTP is refused before anything is forwarded:
400 for an absolute-form or CONNECT target and for a Content-Length that is not one number of
bytes (RFC 9112, section 6.3), 411 for a chunked body, 413 over max_body_bytes; 502 with a
sentence when the upstream does not answer.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import io
import re
import secrets
import sys
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
# 256 random bits: the path a request must start with (secrets.token_urlsafe: letters, digits, - and _).
TOKEN_BYTES = 32
# Far above the largest request a config allows (16 images of 16384 tokens, 3584 px PNGs, base64),
# far below a length that is a mistake or an attack. The body is streamed, never held whole.
MAX_BODY_BYTES = 4 * 1024**3
# A client that sends no byte for this long is gone (AIPerf sends each request at once).
CLIENT_IDLE_SECONDS = 120
DIGITS = re.compile(r"[0-9]+", re.ASCII)


class Refused(Exception):
    """A request the proxy does not forward: its status and one sentence."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status


def body_length(values: list[str], max_body_bytes: int) -> int:
    """The one length that Content-Length fields give (a list of equal values counts as one,
    RFC 9112 section 6.3), or Refused."""
    items = [item.strip() for value in values for item in value.split(",")]
    if not items:
        return 0
    if any(not DIGITS.fullmatch(item) for item in items):
        shown = ", ".join(items)[:80]
        raise Refused(400, f"Content-Length {shown!r} is not a number of bytes; send one decimal length.")
    if any(len(item.lstrip("0")) > len(str(max_body_bytes)) for item in items):
        raise Refused(413, f"the body is over {max_body_bytes} bytes, more than any request of the config.")
    lengths = {int(item) for item in items}
    if len(lengths) > 1:
        raise Refused(400, f"Content-Length gives {len(lengths)} different lengths; send one.")
    (length,) = lengths
    if length > max_body_bytes:
        raise Refused(413, f"the body is {length} bytes, over {max_body_bytes}, more than any request of the config.")
    return length


class ShortBody(Exception):
    """The client's body ended, or stalled, before its Content-Length."""


class Body:
    """The request body as http.client reads a file: `length` bytes of the client's stream, no more."""

    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        self.stream, self.left = stream, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        try:
            data = self.stream.read(size) if size else b""
        except OSError as error:  # a stalled client times out (CLIENT_IDLE_SECONDS)
            raise ShortBody(str(error)) from None
        if size and not data:
            raise ShortBody("the client sent less than its Content-Length")
        self.left -= len(data)
        return data


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """One line, not a traceback in the middle of the load test's table."""
        error = sys.exc_info()[1]
        print(f"key proxy: a request failed ({type(error).__name__}: {error})", file=sys.stderr)


class KeyProxy:
    """`with KeyProxy(upstream, key) as proxy:` serves on proxy.url (which holds the run's token)
    until the block ends."""

    def __init__(
        self, upstream: str, key: str, timeout_seconds: float = 900, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        target = urllib.parse.urlsplit(upstream)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise ValueError(f"{upstream!r} is not an http(s) URL")
        self.upstream = target
        self.token = secrets.token_urlsafe(TOKEN_BYTES)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # Each answer ends with its connection (no length known while streaming).
            protocol_version = "HTTP/1.0"
            timeout = CLIENT_IDLE_SECONDS

            def log_message(self, *args: object) -> None:
                pass  # a request log would be noise in the load test's output

            def answer(self, status: int, sentence: str) -> None:
                data = (sentence + "\n").encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def upstream_path(self) -> str:
                """The path to ask upstream, once the target proves it comes from this run."""
                if not self.path.startswith("/"):
                    # Absolute form (http://host/...), authority form (CONNECT host:port), asterisk form.
                    raise Refused(400, f"the target {self.path[:80]!r} is not a path; this proxy forwards /paths only.")
                segment, _, rest = self.path[1:].partition("/")
                if not hmac.compare_digest(segment.encode(), proxy.token.encode()):
                    raise Refused(403, "this proxy serves only the load test that started it.")
                return proxy.upstream.path.rstrip("/") + "/" + rest

            def forward(self) -> None:
                try:
                    path = self.upstream_path()
                    if self.headers.get_all("Transfer-Encoding"):
                        if self.headers.get_all("Content-Length"):
                            raise Refused(400, "a request with both Transfer-Encoding and Content-Length is ambiguous.")
                        raise Refused(411, "send the body with a Content-Length; chunked bodies are not forwarded.")
                    length = body_length(self.headers.get_all("Content-Length") or [], max_body_bytes)
                except Refused as refused:
                    self.answer(refused.status, str(refused))
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP | {"host", "authorization", "content-length"}
                }
                headers["Authorization"] = f"Bearer {key}"
                if length or self.command in ("POST", "PUT"):
                    headers["Content-Length"] = str(length)
                connection = proxy.connect(timeout_seconds)
                started = False
                try:
                    connection.request(
                        self.command, path, body=Body(self.rfile, length) if length else None, headers=headers
                    )
                    response = connection.getresponse()
                    started = True
                    self.send_response_only(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP | {"content-length"}:
                            self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while chunk := response.read1(RELAY_CHUNK_BYTES):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except ShortBody:
                    with contextlib.suppress(OSError):
                        self.answer(400, "the body ended before its Content-Length; the request was dropped.")
                except (OSError, http.client.HTTPException) as error:
                    if not started:
                        self.bad_gateway(error)
                finally:
                    connection.close()

            def bad_gateway(self, error: BaseException) -> None:
                # Host and port only: an upstream URL's user:password part is never echoed.
                u = proxy.upstream
                where = f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")
                with contextlib.suppress(OSError):  # the client went away too
                    self.answer(
                        502,
                        f"the server at {where} did not answer ({type(error).__name__}: {str(error)[:120]}); "
                        f"check that llama-server runs there (port-forward running?).",
                    )

            do_GET = do_POST = do_PUT = do_DELETE = do_CONNECT = forward

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def connect(self, timeout_seconds: float) -> http.client.HTTPConnection:
        host, port = self.upstream.hostname or "", self.upstream.port
        if self.upstream.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout_seconds)
        return http.client.HTTPConnection(host, port, timeout=timeout_seconds)

    @property
    def url(self) -> str:
        """The base URL to give the client, token included: keep it out of argument lists and logs."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{self.token}"

    def __enter__(self) -> KeyProxy:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
