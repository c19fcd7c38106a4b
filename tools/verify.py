"""`make verify`: is the running llama-server the one the stack config describes?

Checks /health; the slot count (/props), on its own: with server.kvUnified every slot holds the
whole context, so no context check sees another -np; /props (the context per slot, the model alias,
the vision projector) and the context in all (from /slots where the server exposes it, else /props'
slots times their context; the stack runs --no-slots) against what core.sizing computes from the
config; and one image chat within server.requestBudget, which must answer 200 with usage. Each
mismatch is one sentence naming the config key; the exit status is 0 only when everything matches.

usage: python -m tools.verify --url http://127.0.0.1:8008 --api-key-file key.txt --config Pulumi.dev.yaml

What /props returns is set in llama.cpp b11434, tools/server/server-context.cpp get_res_props():
`total_slots` (params.n_parallel), `default_generation_settings.n_ctx` (n_ctx_slot(): the
per-sequence context capped at the training context), `model_alias` (the first --alias) and
`modalities.vision` (mtmd_support_vision of the loaded --mmproj). It has no total context:
/slots lists each slot's n_ctx, and the cache holds their sum (or, unified, one shared n_ctx).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import rules, sizing
from core.config import StackConfig
from core.loading import ConfigError, load_stack
from tools.server_client import Client, chat_body, image_side_for, png, read_key

CHAT_MAX_TOKENS = 8  # enough to see an answer; the check is about the request fitting, not its length


def check_health(client: Client, c: StackConfig) -> list[str]:
    status, body = client.request("/health", auth=False)
    if status == 200 and body == {"status": "ok"}:
        return []
    return [
        f"GET /health answered {status} {body!r}: the server is not ready (still loading the model of "
        f"model.file={c.model.file}, or failing); wait for it or read its log."
    ]


class Unanswered(Exception):
    """A route the remaining checks need did not answer; its one sentence ends the run."""


def props_of(client: Client) -> dict[str, Any]:
    status, props = client.request("/props")
    if status != 200 or not isinstance(props, dict):
        raise Unanswered(
            f"GET /props answered {status}: the key in the API key file is not the stack's apiKey; use the key of this stack."
        )
    return props


def check_slots(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    props = props_of(client)
    if props.get("total_slots") == s.parallel:
        return []
    return [
        f"server.parallel={s.parallel} but the server has {props.get('total_slots')} slots (/props total_slots); "
        f"redeploy the config or set server.parallel to what is deployed."
    ]


def check_props(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    props = props_of(client)
    problems: list[str] = []
    want_slot = rules.slot_tokens(c)
    got_slot = props.get("default_generation_settings", {}).get("n_ctx")
    if got_slot != want_slot:
        problems.append(
            f"server.contextSize={s.context_size} with server.parallel={s.parallel} and server.kvUnified="
            f"{str(s.kv_unified).lower()} gives {want_slot} tokens per slot, but the server gives {got_slot} "
            f"(/props default_generation_settings.n_ctx); redeploy the config or set server.contextSize to what is deployed."
        )
    if props.get("model_alias") != s.alias:
        problems.append(
            f"server.alias={s.alias} but the server names its model {props.get('model_alias')!r} (/props model_alias); "
            f"redeploy the config or set server.alias to what is deployed."
        )
    if props.get("modalities", {}).get("vision") is not True:
        problems.append(
            f"model.mmprojFile={c.model.mmproj_file} is not loaded: /props modalities.vision is not true, so "
            f"image requests fail; check the server's --mmproj file and its log."
        )
    return problems


def check_total_context(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    status, slots = client.request("/slots")
    if status == 200 and isinstance(slots, list):
        per_slot = [slot.get("n_ctx", 0) for slot in slots]
    else:
        # The stack runs --no-slots (the slot dump shows other callers' prompts): each of /props'
        # total_slots holds its default_generation_settings.n_ctx.
        props = props_of(client)
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx", 0)
        per_slot = [n_ctx] * int(props.get("total_slots") or 0)
    got = max(per_slot, default=0) if s.kv_unified else sum(per_slot)
    # A valid config never exceeds the training context per slot (rules.context_within_model), so no cap here.
    want = sizing.allocated_context(s.context_size, s.parallel, s.kv_unified)
    if got == want:
        return []
    return [
        f"server.contextSize={s.context_size} with server.parallel={s.parallel} gives {want} tokens of context in all, "
        f"but the server's slots hold {got} (/slots n_ctx {per_slot}); redeploy the config or set server.contextSize to what is deployed."
    ]


def check_image_chat(client: Client, c: StackConfig) -> list[str]:
    b = c.server.request_budget
    side = image_side_for(b.image_max_tokens)
    body = chat_body(
        c.server.alias,
        "Describe the image in one sentence.",
        [png(side, side)] * b.images,
        min(CHAT_MAX_TOKENS, b.output_tokens),
    )
    status, answer = client.request("/v1/chat/completions", body)
    budget = f"server.requestBudget ({b.images} x {side}x{side} image, {CHAT_MAX_TOKENS} output tokens)"
    if status != 200:
        error = answer.get("error", {}).get("message", answer) if isinstance(answer, dict) else answer
        return [
            f"a chat within {budget} got HTTP {status} ({error}); the server cannot serve the budget the config promises."
        ]
    usage: dict[str, Any] = (answer.get("usage") or {}) if isinstance(answer, dict) else {}
    if not usage.get("prompt_tokens") or not usage.get("completion_tokens"):
        return [
            f"a chat within {budget} answered 200 without usage ({answer!r}); the server is not llama-server's OpenAI API."
        ]
    return []


CHECKS: tuple[tuple[str, Callable[[Client, StackConfig], list[str]]], ...] = (
    ("health", check_health),
    ("slot count", check_slots),
    ("props: context per slot, alias, vision projector", check_props),
    ("context in all", check_total_context),
    ("image chat within the request budget", check_image_chat),
)


def verify(client: Client, c: StackConfig) -> list[tuple[str, list[str]]]:
    """Each check's name and its mismatches; after a failed health check, or a route that does not
    answer (a wrong key), the rest are not run."""
    out: list[tuple[str, list[str]]] = []
    for name, check in CHECKS:
        try:
            out.append((name, check(client, c)))
        except Unanswered as err:
            out.append((name, [str(err)]))
            break
        if name == "health" and out[-1][1]:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of llama-server, e.g. http://127.0.0.1:8008")
    parser.add_argument("--api-key-file", required=True, type=Path, help="file holding the stack's apiKey")
    parser.add_argument("--config", required=True, type=Path, help="the stack's Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    try:
        config = load_stack(args.config)
    except ConfigError as err:
        print(f"{args.config} is not a valid stack config:", *err.problems, sep="\n  ", file=sys.stderr)
        return 2
    client = Client(args.url, read_key(args.api_key_file))
    try:
        results = verify(client, config)
    except urllib.error.URLError as err:
        print(f"MISMATCH cannot reach {args.url} ({err.reason}); check the URL (port-forward running?).")
        return 1
    for name, problems in results:
        print(f"ok       {name}" if not problems else "\n".join(f"MISMATCH {p}" for p in problems))
    return 1 if any(problems for _, problems in results) else 0


if __name__ == "__main__":
    sys.exit(main())
