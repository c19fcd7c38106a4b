"""A small client of llama-server's HTTP API (stdlib only): JSON requests with the API key, its
Prometheus metrics, and PNG images sized in tokens. `make verify` and `make loadtest` use it.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import math
import struct
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.catalog import QWEN2VL_PIXELS_PER_TOKEN_SIDE


class KeyFileError(Exception):
    """The --api-key-file cannot be read; the message is the sentence that says so."""


def read_key(path: Path) -> str:
    """The API key as llama-server reads --api-key-file: the first non-empty line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(
            f"--api-key-file={path} cannot be read ({type(err).__name__}); give the file holding the stack's apiKey."
        ) from None
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


@functools.lru_cache(maxsize=4)
def png(width: int, height: int) -> bytes:
    """An RGB PNG with a gradient (so it compresses little, like a photo, and is never empty); the
    last few are kept, as building a 1792 px one takes a second."""
    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(width) for _ in range(3)) for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def image_side_for(max_tokens: int) -> int:
    """Side in pixels of the largest square image that stays within `max_tokens` (one token per 28x28 px),
    so a request built from it uses the image budget without being downscaled."""
    return math.isqrt(max_tokens) * QWEN2VL_PIXELS_PER_TOKEN_SIDE


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def chat_body(model: str, text: str, images: list[bytes], max_tokens: int, **extra: object) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format to {name: value} for unlabelled samples (all of llama-server's);
    a line that is not `name value` is skipped, as a scraper skips what it cannot read."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value.split(" ")[0])
            except ValueError:
                continue
    return out


# What a message quotes of anything the server sent: enough to recognise it, never a whole page.
QUOTE_CHARS = 200
# The most a reply may hold: /props, /slots and /metrics are a few KiB; anything larger is not llama-server.
MAX_REPLY_BYTES = 4 * 1024 * 1024
# The largest count (slots, tokens) taken as one: far above any context, far below what breaks arithmetic.
MAX_COUNT = 2**31


def clip(text: str) -> str:
    """`text` on one line (control characters escaped, so a server cannot print a line of its own),
    cut to QUOTE_CHARS characters, saying how long it was."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[: QUOTE_CHARS + 1])
    return shown if len(text) <= QUOTE_CHARS else f"{shown[:QUOTE_CHARS]}... ({len(text)} characters)"


def quote(value: object) -> str:
    """A value the server sent, as a message shows it: its repr, clipped."""
    return clip(repr(value))


def count(value: object) -> int | None:
    """A JSON integer within 0..MAX_COUNT, or None: a bool, a float, a string, null or an absurd number is no count."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def field_of(doc: object, *keys: str) -> object:
    """doc[k1][k2]... where every level is a JSON object, else None (a missing key, null, a list, a string)."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


class ServerError(Exception):
    """The server could not be asked, or answered something that is not HTTP: one sentence."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with the same headers, Authorization included, to any host: a
    redirect is llama-server's answer to nothing, so it comes back as its own status, key unsent."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Client:
    base: str  # http://host:port, no trailing slash
    key: str
    timeout_seconds: float = 300  # each request
    deadline: float | None = field(default=None, compare=False)  # time.monotonic() by which every request ends

    def request(self, path: str, body: dict[str, Any] | None = None, auth: bool = True) -> tuple[int, Any]:
        """(HTTP status, JSON body or text). A refused connection, a reply that is not HTTP, a
        hang-up, a stall past the timeout or a reply over MAX_REPLY_BYTES raises ServerError."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode() if body is not None else None
        method = "POST" if data is not None else "GET"
        timeout = self.timeout_seconds
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise ServerError(f"{method} {path} was not sent: the time for the whole run is spent.")
        try:
            req = urllib.request.Request(self.base.rstrip("/") + path, data=data, headers=headers)
        except ValueError:
            raise ServerError(
                f"{quote(self.base)} is not an http(s) URL; give one like http://127.0.0.1:8008."
            ) from None
        try:
            try:
                with _OPENER.open(req, timeout=timeout) as r:
                    status, raw = r.status, r.read(MAX_REPLY_BYTES + 1)
            except urllib.error.HTTPError as err:
                status, raw = err.code, err.read(MAX_REPLY_BYTES + 1)
        except urllib.error.URLError as err:
            raise ServerError(
                f"cannot reach {self.base} ({clip(str(err.reason))}); check the URL (port-forward running?)."
            ) from None
        except http.client.RemoteDisconnected:
            raise ServerError(
                f"{method} {path}: the server hung up without an answer; check that the URL is llama-server's."
            ) from None
        except (http.client.BadStatusLine, http.client.LineTooLong) as err:
            raise ServerError(
                f"{method} {path}: the reply is not HTTP ({clip(str(err))}); check that the URL is llama-server's port."
            ) from None
        except TimeoutError:
            raise ServerError(
                f"{method} {path}: no answer within {timeout:.0f} s; the server stalled, read its log."
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise ServerError(
                f"{method} {path}: the reply broke off ({type(err).__name__}: {clip(str(err))}); read the server's log."
            ) from None
        if len(raw) > MAX_REPLY_BYTES:
            raise ServerError(
                f"{method} {path}: the reply is over {MAX_REPLY_BYTES} bytes, and llama-server's are a few KiB; check that the URL is llama-server's."
            )
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text, parse_constant=reject_constant)
        except (ValueError, RecursionError):
            return status, text

    def metrics(self) -> dict[str, float]:
        status, text = self.request("/metrics")
        if status != 200 or not isinstance(text, str):
            raise ServerError(f"GET /metrics answered {status}: start llama-server with --metrics and the API key.")
        return parse_metrics(text)


def reject_constant(name: str) -> object:
    """NaN and Infinity are not JSON (RFC 8259, section 6), though Python's json reads them."""
    raise ValueError(f"{name} is not JSON")
