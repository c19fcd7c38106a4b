"""`make verify` (tools/verify.py) against a stand-in that answers as the pinned llama-server would:
each mismatch on its own, without a server (tests/test_e2e_verify.py runs the real one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import sizing
from core.config import StackConfig
from tools import verify
from tools.server_client import Client


@dataclass(frozen=True)
class Answers(Client):
    """llama-server started with -c, -np and --kv-unified as given, and --no-slots (as the stack runs)."""

    context: int = 32768
    parallel: int = 8
    unified: bool = False
    alias: str = "qwen2-vl-7b-instruct"
    base: str = "http://stand-in"
    key: str = "key"
    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def request(self, path: str, body: dict[str, Any] | None = None, auth: bool = True) -> tuple[int, Any]:
        n_ctx = sizing.tokens_per_slot(self.context, self.parallel, self.unified, 32768)
        answers = {
            "/health": (200, {"status": "ok"}),
            "/props": (
                200,
                {
                    "total_slots": self.parallel,
                    "default_generation_settings": {"n_ctx": n_ctx},
                    "model_alias": self.alias,
                    "modalities": {"vision": True},
                },
            ),
            "/slots": (501, {"error": {"message": "This server does not support slots endpoint."}}),
            "/v1/chat/completions": (200, {"usage": {"prompt_tokens": 300, "completion_tokens": 8}}),
        }
        return {**answers, **self.routes}[path]


def mismatches(client: Client, c: StackConfig) -> list[str]:
    return [problem for _, problems in verify.verify(client, c) for problem in problems]


def test_a_server_as_the_config_describes_passes():
    assert mismatches(Answers(), StackConfig()) == []


def test_another_slot_count_with_a_unified_cache_is_a_mismatch_on_its_own():
    """Unified, every slot holds the whole context: only the slot count tells -np 4 from -np 8."""
    c = StackConfig.model_validate({"server": {"kvUnified": True}})
    assert mismatches(Answers(parallel=4, unified=True), c) == [
        "server.parallel=8 but the server has 4 slots (/props total_slots); "
        "redeploy the config or set server.parallel to what is deployed."
    ]


def test_a_key_that_props_refuses_is_one_mismatch_and_ends_the_run():
    results = verify.verify(Answers(routes={"/props": (401, {"error": "Invalid API Key"})}), StackConfig())
    assert results == [
        ("health", []),
        (
            "slot count",
            [
                "GET /props answered 401: the key in the API key file is not the stack's apiKey; "
                "use the key of this stack."
            ],
        ),
    ]
