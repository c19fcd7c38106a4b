"""`make verify`: is the running llama-server the one the stack config describes?

Checks /health; the slot count (/props), on its own: with server.kvUnified every slot holds the
whole context, so no context check sees another -np; /props (the context per slot, the model alias,
the vision projector) and the context in all (from /slots where the server exposes it, else /props'
slots times their context; the stack runs --no-slots) against what core.sizing computes from the
config; and one image chat within server.requestBudget, which must answer 200 with usage. Each
mismatch is one sentence naming the config key, and a last MISMATCH line counts them; the exit
status is 0 only when everything matches.

usage: python -m tools.verify --url http://127.0.0.1:8008 --api-key-file key.txt --config Pulumi.dev.yaml [--timeout 600]

Whatever the server answers (not HTTP, not JSON, null or absurd fields, a hang-up, a stall), the
run ends within --timeout seconds with a MISMATCH line, quoting at most QUOTE_CHARS characters of
anything the server sent; it never prints a traceback.

What /props returns is set in llama.cpp b11434, tools/server/server-context.cpp get_res_props():
`total_slots` (params.n_parallel), `default_generation_settings.n_ctx` (n_ctx_slot(): the
per-sequence context capped at the training context), `model_alias` (the first --alias) and
`modalities.vision` (mtmd_support_vision of the loaded --mmproj). It has no total context:
/slots lists each slot's n_ctx, and the cache holds their sum (or, unified, one shared n_ctx).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import rules, sizing
from core.config import StackConfig
from core.loading import ConfigError, load_stack
from tools.server_client import (
    Client,
    KeyFileError,
    ServerError,
    chat_body,
    count,
    field_of,
    image_side_for,
    png,
    quote,
    read_key,
)

CHAT_MAX_TOKENS = 8  # enough to see an answer; the check is about the request fitting, not its length
# The whole run: loading nothing, one image chat on a busy GPU server takes well under a minute.
DEFAULT_TIMEOUT_SECONDS = 600


def check_health(client: Client, c: StackConfig) -> list[str]:
    status, body = client.request("/health", auth=False)
    if status == 200 and body == {"status": "ok"}:
        return []
    return [
        f"GET /health answered {status} {quote(body)}: the server is not ready (still loading the model of "
        f"model.file={c.model.file}, or failing); wait for it or read its log."
    ]


class Unanswered(Exception):
    """A route the remaining checks need did not answer, or not in HTTP; its one sentence ends the run."""


def props_of(client: Client) -> dict[str, Any]:
    status, props = client.request("/props")
    if status in (401, 403):
        raise Unanswered(
            f"GET /props answered {status}: the key in the API key file is not the stack's apiKey; use the key of this stack."
        )
    if status != 200 or not isinstance(props, dict):
        raise Unanswered(
            f"GET /props answered {status} with {quote(props)}, not llama-server's JSON object; "
            f"check that the URL is llama-server's and read its log."
        )
    return props


def check_slots(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    props = props_of(client)
    got = props.get("total_slots")
    if count(got) == s.parallel:
        return []
    return [
        f"server.parallel={s.parallel} but the server has {quote(got)} slots (/props total_slots); "
        f"redeploy the config or set server.parallel to what is deployed."
    ]


def check_props(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    props = props_of(client)
    problems: list[str] = []
    want_slot = rules.slot_tokens(c)
    got_slot = field_of(props, "default_generation_settings", "n_ctx")
    if count(got_slot) != want_slot:
        problems.append(
            f"server.contextSize={s.context_size} with server.parallel={s.parallel} and server.kvUnified="
            f"{str(s.kv_unified).lower()} gives {want_slot} tokens per slot, but the server gives {quote(got_slot)} "
            f"(/props default_generation_settings.n_ctx); redeploy the config or set server.contextSize to what is deployed."
        )
    alias = props.get("model_alias")
    if not isinstance(alias, str) or alias != s.alias:
        problems.append(
            f"server.alias={s.alias} but the server names its model {quote(alias)} (/props model_alias); "
            f"redeploy the config or set server.alias to what is deployed."
        )
    if field_of(props, "modalities", "vision") is not True:
        problems.append(
            f"model.mmprojFile={c.model.mmproj_file} is not loaded: /props modalities.vision is not true, so "
            f"image requests fail; check the server's --mmproj file and its log."
        )
    return problems


def check_total_context(client: Client, c: StackConfig) -> list[str]:
    s = c.server
    status, slots = client.request("/slots")
    if status == 200 and isinstance(slots, list):
        per_slot = [count(field_of(slot, "n_ctx")) for slot in slots]
        where = "/slots n_ctx"
    else:
        # The stack runs --no-slots (the slot dump shows other callers' prompts): each of /props'
        # total_slots holds its default_generation_settings.n_ctx.
        props = props_of(client)
        n_ctx = count(field_of(props, "default_generation_settings", "n_ctx"))
        slot_count = count(props.get("total_slots"))
        # More slots than the config's are a mismatch of their own (check_slots); a count is enough here.
        per_slot = [n_ctx] * min(slot_count or 0, s.parallel + 1)
        where = "/props total_slots x default_generation_settings.n_ctx"
    # A valid config never exceeds the training context per slot (rules.context_within_model), so no cap here.
    want = sizing.allocated_context(s.context_size, s.parallel, s.kv_unified)
    counted = [n for n in per_slot if n is not None]
    got = (max(counted, default=0) if s.kv_unified else sum(counted)) if len(counted) == len(per_slot) else None
    if got == want:
        return []
    return [
        f"server.contextSize={s.context_size} with server.parallel={s.parallel} gives {want} tokens of context in all, "
        f"but the server's slots hold {quote(got)} ({where} {quote(per_slot)}); redeploy the config or set server.contextSize to what is deployed."
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
        message = field_of(answer, "error", "message")
        error = message if isinstance(message, str) else field_of(answer, "error") or answer
        return [
            f"a chat within {budget} got HTTP {status} ({quote(error)}); the server cannot serve the budget the config promises."
        ]
    prompt, completion = (count(field_of(answer, "usage", k)) for k in ("prompt_tokens", "completion_tokens"))
    if not prompt or not completion:
        return [
            f"a chat within {budget} answered 200 without usage ({quote(answer)}); the server is not llama-server's OpenAI API."
        ]
    return []


CHECKS: tuple[tuple[str, Callable[[Client, StackConfig], list[str]]], ...] = (
    ("health", check_health),
    ("slot count", check_slots),
    ("props: context per slot, alias, vision projector", check_props),
    ("context in all", check_total_context),
    ("image chat within the request budget", check_image_chat),
)


def verify(
    client: Client, c: StackConfig, out: list[tuple[str, list[str]]] | None = None
) -> list[tuple[str, list[str]]]:
    """Each check's name and its mismatches, appended to `out` as each ends; after a failed health
    check, or a route that does not answer (a wrong key, not HTTP), the rest are not run."""
    out = [] if out is None else out
    for name, check in CHECKS:
        try:
            out.append((name, check(client, c)))
        except (Unanswered, ServerError) as err:
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
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds for the whole run (default {DEFAULT_TIMEOUT_SECONDS})",
    )
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 86400:
        parser.error(f"--timeout={args.timeout:g} is not within 0 < seconds <= 86400; give e.g. --timeout 600.")
    try:
        config = load_stack(args.config)
    except ConfigError as err:
        print(f"{args.config} is not a valid stack config:", *err.problems, sep="\n  ", file=sys.stderr)
        return 2
    try:
        key = read_key(args.api_key_file)
    except KeyFileError as err:
        print(f"MISMATCH {err}")
        return 1
    deadline = time.monotonic() + args.timeout
    client = Client(args.url, key, timeout_seconds=args.timeout, deadline=deadline)
    results: list[tuple[str, list[str]]] = []
    # A server can trickle a reply a byte at a time, each within a socket timeout: only a deadline
    # on the whole run bounds it. The checks run in a thread left behind when the time is up.
    worker = threading.Thread(target=verify, args=(client, config, results), daemon=True)
    worker.start()
    worker.join(args.timeout)
    done = not worker.is_alive()
    finished = list(results)
    for name, problems in finished:
        print(f"ok       {name}" if not problems else "\n".join(f"MISMATCH {p}" for p in problems))
    if not done:
        running = CHECKS[len(finished)][0] if len(finished) < len(CHECKS) else "the last check"
        print(
            f"MISMATCH {running}: no answer within --timeout={args.timeout:g} s for the whole run; "
            f"the server stalls (read its log), or raise --timeout."
        )
    failed = sum(1 for _, problems in finished if problems) + (not done)
    if not failed:
        return 0
    not_run = len(CHECKS) - len(finished) - (not done)
    # The last line says it in one place, whatever came before it.
    print(
        f"MISMATCH {args.url} is not what {args.config} describes: {failed} of {len(CHECKS)} checks failed"
        + (f", {not_run} not run." if not_run else ".")
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
