"""The push credential: the deployer's Entra ID token traded for an ACR refresh token."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from components.image import acr_refresh_token


def test_token_exchange_posts_the_form_acr_expects():
    seen: dict[str, object] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen["path"] = self.path
            seen["form"] = dict(urllib.parse.parse_qsl(body))
            payload = json.dumps({"refresh_token": "acr-refresh-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        login_server = f"127.0.0.1:{server.server_address[1]}"
        token = acr_refresh_token(login_server, "tenant-id", "arm-token", scheme="http")
    finally:
        server.shutdown()
        server.server_close()
    assert token == "acr-refresh-token"
    assert seen["path"] == "/oauth2/exchange"
    assert seen["form"] == {
        "grant_type": "access_token",
        "service": login_server,
        "tenant": "tenant-id",
        "access_token": "arm-token",
    }
