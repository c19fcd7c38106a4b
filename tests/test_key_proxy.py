"""tools/key_proxy.py: the loopback proxy that gives AIPerf the API key without an argument list,
to this run only, and refuses what is not plain origin-form HTTP."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError

import pytest

from tests.httpfiles import ScriptedServer
from tests.rawhttp import RawServer, Reply
from tools.key_proxy import KeyProxy


def test_every_forwarded_request_carries_the_key_and_only_the_key():
    upstream = ScriptedServer(status=200, body="ok")
    try:
        with KeyProxy(f"http://127.0.0.1:{upstream.port}", "sk-proxy-key") as proxy:
            request = urllib.request.Request(f"{proxy.url}/v1/models", headers={"Authorization": "Bearer forged"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert (response.status, response.read()) == (200, b"ok")
    finally:
        upstream.close()
    (seen,) = upstream.requests
    assert seen["path"] == "/v1/models"
    assert seen["authorization"] == "Bearer sk-proxy-key"


def test_an_error_status_reaches_the_client_unchanged():
    upstream = ScriptedServer(status=400, body='{"error": "exceed_context_size_error"}')
    try:
        with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy, pytest.raises(HTTPError) as err:
            urllib.request.urlopen(f"{proxy.url}/v1/models", timeout=10)
    finally:
        upstream.close()
    assert err.value.code == 400
    assert b"exceed_context_size_error" in err.value.read()


def test_a_stream_is_relayed_as_it_arrives_not_when_it_ends():
    """Time to first token is measured through the proxy: the first event must not wait for the last."""
    release = threading.Event()

    class Streaming(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            release.wait(10)
            self.wfile.write(b"data: last\n\n")

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with KeyProxy(f"http://127.0.0.1:{upstream.server_address[1]}", "k") as proxy:
            started = time.monotonic()
            with urllib.request.urlopen(f"{proxy.url}/v1/chat/completions", data=b"{}", timeout=10) as response:
                first = response.readline()
                took = time.monotonic() - started
                release.set()
                rest = response.read()
    finally:
        release.set()
        upstream.shutdown()
        upstream.server_close()
    assert first == b"data: first\n"
    assert took < 2, f"the first event took {took:.1f} s: the proxy buffered the stream"
    assert b"data: last" in rest


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="is not an http"):
        KeyProxy("ftp://127.0.0.1/", "k")


# --- malformed requests, a dead upstream, and other local users ------------------------------


def raw(proxy: KeyProxy, request: bytes) -> tuple[int, bytes]:
    """Status and body of the proxy's answer to bytes written as they are."""
    port = int(proxy.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while data := s.recv(65536):
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def path_of(proxy: KeyProxy) -> str:
    return "/" + proxy.url.split("/", 3)[3]


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    server = ScriptedServer(status=200, body="ok")
    yield server
    server.close()


def test_a_dead_upstream_is_a_502_with_a_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with KeyProxy(f"http://user:sk-upstream-secret@127.0.0.1:{port}", "sk-proxy-key") as proxy:
        status, body = raw(proxy, f"GET {path_of(proxy)}/v1/models HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 502
    assert body.decode().startswith(f"the server at http://127.0.0.1:{port} did not answer (ConnectionRefusedError")
    assert b"sk-" not in body


def test_an_upstream_that_hangs_up_is_a_502():
    server = RawServer(routes={"/v1/models": Reply(hang_up=True)})
    try:
        with KeyProxy(server.base, "k") as proxy:
            status, body = raw(proxy, f"GET {path_of(proxy)}/v1/models HTTP/1.1\r\n\r\n".encode())
    finally:
        server.close()
    assert status == 502 and b"did not answer (RemoteDisconnected" in body


@pytest.mark.parametrize(
    ("length", "status"),
    [
        ("-1", 400),
        ("abc", 400),
        ("+2", 400),  # int() takes a sign; RFC 9110 does not
        ("2_0", 400),  # int() takes an underscore
        ("\u0662", 400),  # int() takes an Arabic-Indic two
        ("0x2", 400),
        ("2, 3", 400),  # a list of different lengths
        ("9" * 5000, 413),  # past int()'s 4300 digits
    ],
)
def test_a_bad_content_length_is_refused_and_nothing_forwarded(upstream, length, status):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy:
        got, body = raw(
            proxy,
            f"POST {path_of(proxy)}/v1/chat/completions HTTP/1.1\r\nContent-Length: {length}\r\n\r\n{{}}".encode(),
        )
    assert (got, upstream.requests) == (status, [])
    assert body.endswith(b".\n") and b"Traceback" not in body


def test_two_content_length_fields_that_differ_are_refused(upstream):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy:
        got, _ = raw(
            proxy,
            f"POST {path_of(proxy)}/x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}".encode(),
        )
    assert (got, upstream.requests) == (400, [])


def test_two_content_length_fields_that_agree_are_one_length():
    """RFC 9112 6.3: equal values count as one; the other side of the test above."""
    seen: list[bytes] = []

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with KeyProxy(f"http://127.0.0.1:{server.server_address[1]}", "k") as proxy:
            got, _ = raw(
                proxy,
                f"POST {path_of(proxy)}/x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2, 02\r\n\r\n{{}}".encode(),
            )
    finally:
        server.shutdown()
        server.server_close()
    assert (got, seen) == (200, [b"{}"])


@pytest.mark.parametrize(("length", "status"), [(64, 200), (65, 413)])
def test_the_body_limit_holds_at_its_bound(length, status):
    """At max_body_bytes the body is forwarded; one byte more is refused unread."""
    server = RawServer(routes={"/x": Reply.json(200, {})})
    try:
        with KeyProxy(server.base, "k", max_body_bytes=64) as proxy:
            got, _ = raw(
                proxy, f"PUT {path_of(proxy)}/x HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode() + b"x" * length
            )
    finally:
        server.close()
    assert got == status
    assert [body for *_, body in server.requests] == ([b"x" * length] if status == 200 else [])


def test_a_chunked_body_is_refused(upstream):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy:
        got, _ = raw(
            proxy,
            f"POST {path_of(proxy)}/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode(),
        )
    assert (got, upstream.requests) == (411, [])


@pytest.mark.parametrize(
    "target",
    [
        "http://evil/",
        "http://127.0.0.1/{token}/v1/models",  # absolute form, even with the token
        "HTTP://127.0.0.1:1/{token}/v1/models",
        "*",
    ],
)
def test_a_target_that_is_not_a_path_is_refused(upstream, target):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy:
        got, body = raw(proxy, f"GET {target.format(token=proxy.token)} HTTP/1.1\r\n\r\n".encode())
    assert (got, upstream.requests) == (400, [])
    assert b"is not a path" in body


def test_connect_is_refused(upstream):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "k") as proxy:
        got, _ = raw(proxy, f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n\r\n".encode())
    assert (got, upstream.requests) == (400, [])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models",
        "/{swapped}/v1/models",  # the token in another case
        "/{short}/v1/models",  # one character short
        "/{token}x/v1/models",  # one character more
        "/v1/models?{token}",
        "/v1/{token}/models",
        "/%2F{token}/v1/models",
        "/{token_encoded}/v1/models",  # its first character percent-encoded
    ],
)
def test_a_request_without_the_runs_token_gets_403_and_the_key_goes_nowhere(upstream, path):
    """Another local user can reach the port, not the key."""
    with KeyProxy(f"http://127.0.0.1:{upstream.port}", "sk-proxy-key") as proxy:
        t = proxy.token
        target = path.format(token=t, swapped=t.swapcase(), short=t[:-1], token_encoded=f"%{ord(t[0]):02X}{t[1:]}")
        got, body = raw(proxy, f"GET {target} HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n".encode())
    assert (got, upstream.requests) == (403, [])
    assert t.encode() not in body and b"sk-proxy-key" not in body


def test_the_token_is_new_each_run_and_long():
    with KeyProxy("http://127.0.0.1:9", "k") as first, KeyProxy("http://127.0.0.1:9", "k") as second:
        assert first.token != second.token
        assert len(first.token) >= 43  # 256 bits in base64url
        assert first.url.endswith("/" + first.token)


def test_the_upstream_path_and_the_query_are_kept(upstream):
    with KeyProxy(f"http://127.0.0.1:{upstream.port}/base/", "k") as proxy:
        got, _ = raw(proxy, f"GET {path_of(proxy)}/metrics?x=1 HTTP/1.1\r\n\r\n".encode())
    assert got == 200
    assert upstream.requests[0]["path"] == "/base/metrics?x=1"


def test_a_body_shorter_than_its_content_length_is_a_400():
    server = RawServer(routes={"/x": Reply.json(200, {})})
    try:
        with KeyProxy(server.base, "k") as proxy:
            got, body = raw(proxy, f"POST {path_of(proxy)}/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n{{}}".encode())
    finally:
        server.close()
    assert got == 400 and b"ended before its Content-Length" in body
