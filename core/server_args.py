"""The llama-server command line for a stack: every flag set explicitly, none left to defaults.

Pure, so the mocks tests, the render and the end-to-end test all see the same argument list.
Flags are those of the pinned release (common/arg.cpp of llama.cpp b11434).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Server


@dataclass(frozen=True)
class ServerPaths:
    model: str
    mmproj: str
    api_key_file: str


def llama_server_args(s: Server, paths: ServerPaths, host: str = "0.0.0.0") -> list[str]:
    args = [
        "--host", host,
        "--port", str(s.port),
        "-m", paths.model,
        "--mmproj", paths.mmproj,
        "--alias", s.alias,
        "-c", str(s.context_size),
        "-np", str(s.parallel),
        "-b", str(s.batch_size),
        "-ub", str(s.ubatch_size),
        "-ngl", str(s.gpu_layers),
        "-t", str(s.threads),
        "-fa", s.flash_attention,
        "-ctk", s.cache_type_k,
        "-ctv", s.cache_type_v,
        "--kv-unified" if s.kv_unified else "--no-kv-unified",
        "--image-max-tokens", str(s.request_budget.image_max_tokens),
        # Never let the server shrink context or offload to fit memory: the validator decided.
        "--fit", "off",
        "--metrics",
        "--api-key-file", paths.api_key_file,
        # Off unless asked for: the slot dump (prompts of other callers), the web UI, and CORS
        # beyond localhost origins (tools/server/server-http.cpp: "localhost" reflects only those).
        "--no-slots",
        "--webui" if s.web_ui else "--no-webui",
        "--cors-origins", "localhost",
    ]  # fmt: skip
    return args
