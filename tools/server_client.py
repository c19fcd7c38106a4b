"""A small client of llama-server's HTTP API (stdlib only): JSON requests with the API key, its
Prometheus metrics, and PNG images sized in tokens. `make verify` and `make loadtest` use it.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.catalog import QWEN2VL_PIXELS_PER_TOKEN_SIDE


def read_key(path: Path) -> str:
    """The API key as llama-server reads --api-key-file: the first non-empty line."""
    return next((line.strip() for line in path.read_text().splitlines() if line.strip()), "")


def png(width: int, height: int) -> bytes:
    """An RGB PNG with a gradient (so it compresses little, like a photo, and is never empty)."""
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
    """Prometheus text format to {name: value} for unlabelled samples (all of llama-server's)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            out[name] = float(value.split(" ")[0])
    return out


@dataclass(frozen=True)
class Client:
    base: str  # http://host:port, no trailing slash
    key: str
    timeout_seconds: float = 300

    def request(self, path: str, body: dict[str, Any] | None = None, auth: bool = True) -> tuple[int, Any]:
        """(HTTP status, JSON body or text); a refused connection raises URLError."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base.rstrip("/") + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metrics(self) -> dict[str, float]:
        status, text = self.request("/metrics")
        if status != 200 or not isinstance(text, str):
            raise RuntimeError(f"GET /metrics answered {status}: start llama-server with --metrics and the API key")
        return parse_metrics(text)
