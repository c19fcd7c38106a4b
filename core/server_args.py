"""The llama-server command line for a stack: every flag set explicitly, none left to defaults.

Pure, so the mocks tests, the render and the end-to-end test all see the same argument list.
Flags are those of the pinned release (common/arg.cpp of llama.cpp b11434).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from core.config import Server

HOST = "0.0.0.0"


@dataclass(frozen=True)
class ServerPaths:
    model: str
    mmproj: str
    api_key_file: str


@dataclass(frozen=True)
class Flag:
    """One flag of the command line and where its value comes from: a `Server` field, a path, or
    a value that is the same in every stack."""

    flag: str
    field: str | None = None  # the Server field it carries, dotted into a nested model
    off: str | None = None  # for a bool field: the flag given when it is false (`flag` when true)
    path: str | None = None  # the ServerPaths field it carries
    value: str | None = None  # a fixed value; a flag with no field, path or value is a bare switch
    derived: str | None = None  # a Server property computed from the fields in `reads`
    reads: tuple[str, ...] = ()

    def args(self, s: Server, paths: ServerPaths) -> list[str]:
        if self.field is not None:
            value = attrgetter(self.field)(s)
            if self.off is not None:
                return [self.flag if value else self.off]
            return [self.flag, str(value)]
        if self.path is not None:
            return [self.flag, getattr(paths, self.path)]
        if self.derived is not None:
            return [self.flag, str(getattr(s, self.derived))]
        return [self.flag] if self.value is None else [self.flag, self.value]


# The command line, in order: `Server` field -> flag, among the flags every stack sets alike.
COMMAND_LINE: tuple[Flag, ...] = (
    Flag("--host", value=HOST),
    Flag("--port", field="port"),
    Flag("-m", path="model"),
    Flag("--mmproj", path="mmproj"),
    Flag("--alias", field="alias"),
    Flag("-c", field="context_size"),
    Flag("-np", field="parallel"),
    Flag("-b", field="batch_size"),
    Flag("-ub", field="ubatch_size"),
    Flag("-ngl", field="gpu_layers"),
    Flag("-sm", field="split_mode"),
    Flag("-ts", derived="tensor_split_arg", reads=("gpus_per_replica", "tensor_split")),
    Flag("-t", field="threads"),
    Flag("-fa", field="flash_attention"),
    Flag("-ctk", field="cache_type_k"),
    Flag("-ctv", field="cache_type_v"),
    Flag("--kv-unified", field="kv_unified", off="--no-kv-unified"),
    Flag("--image-max-tokens", field="request_budget.image_max_tokens"),
    # Never let the server shrink context or offload to fit memory: the validator decided.
    Flag("--fit", value="off"),
    Flag("--metrics"),
    Flag("--api-key-file", path="api_key_file"),
    # Off unless asked for: the slot dump (prompts of other callers), the web UI, and CORS
    # beyond localhost origins (tools/server/server-http.cpp: "localhost" reflects only those).
    Flag("--no-slots"),
    Flag("--webui", field="web_ui", off="--no-webui"),
    Flag("--cors-origins", value="localhost"),
)

# `Server` fields that are no llama-server flag, and what reads them instead.
NOT_FLAGS: dict[str, str] = {
    "replicas": "the Deployment's replica count",
    "resources": "the container's requests and limits",
    "vram_headroom": "the VRAM rule (core/rules.py)",
    "startup_timeout_seconds": "the startup probe's budget",
    "termination_grace_seconds": "the pod's grace period and its drain hook",
    "remote_images": "the network policy's egress to public addresses",
    "request_budget.images": "the per-slot rule and the public endpoint's body limit",
    "request_budget.prompt_tokens": "the per-slot rule and the public endpoint's body limit",
    "request_budget.output_tokens": "the per-slot rule and the public endpoint's timeout",
}


def llama_server_args(s: Server, paths: ServerPaths) -> list[str]:
    return [arg for flag in COMMAND_LINE for arg in flag.args(s, paths)]
