"""tools/key_proxy.py: the loopback proxy that gives AIPerf the API key without an argument list."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError

import pytest

from tests.httpfiles import ScriptedServer
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
