"""`make verify` (tools/verify.py) against a stand-in that answers as the pinned llama-server would:
each mismatch on its own, without a server (tests/test_e2e_verify.py runs the real one); then
against a loopback server that answers badly (not HTTP, not JSON, null or absurd fields, a
hang-up, a stall, random JSON shapes): one MISMATCH line at the end, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import sizing
from core.config import StackConfig
from core.loading import load_stack
from tests.conftest import write_stack_file
from tests.rawhttp import RawServer, Reply, fake_llama_server, llama_server_answers
from tools import verify
from tools.server_client import MAX_COUNT, MAX_REPLY_BYTES, QUOTE_CHARS, Client, clip, count


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


# --- whatever the server answers: one MISMATCH line, never a traceback -------------------------

# A body a test can find again in the output: nothing of it may be quoted past QUOTE_CHARS.
MARKER = "<html><body>" + "page of a proxy that is not llama-server " * 2000 + "</body></html>"


@pytest.fixture(scope="module")
def stack_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A stack file of the default config (8 slots of 4096 tokens) and a key file."""
    directory = tmp_path_factory.mktemp("verify")
    key = directory / "api-key"
    key.write_text("sk-verify\n")
    return write_stack_file(directory, {}), key


@pytest.fixture(scope="module")
def one_slot_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One slot of the whole context: where `true` would pass for the count 1."""
    directory = tmp_path_factory.mktemp("verify-one")
    key = directory / "api-key"
    key.write_text("sk-verify\n")
    return write_stack_file(directory, {"server": {"parallel": 1}}), key


def run_main(server: RawServer, files: tuple[Path, Path], *extra: str) -> tuple[int, list[str], str, float]:
    """Exit status, stdout lines, stderr and seconds of `make verify` against this server."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = verify.main(["--url", server.base, "--api-key-file", str(files[1]), "--config", str(files[0]), *extra])
    return rc, out.getvalue().splitlines(), err.getvalue(), time.monotonic() - started


def assert_fails_well(rc: int, lines: list[str], err: str) -> None:
    """Non-zero, the last line the one MISMATCH that counts the failed checks, no traceback, no
    long quote of any body, no line that the server wrote."""
    assert rc == 1, lines
    assert lines and lines[-1].startswith("MISMATCH ") and " checks failed" in lines[-1], lines
    assert sum(" checks failed" in line for line in lines) == 1, lines
    assert "Traceback" not in "\n".join(lines) + err and err == "", err
    for line in lines:
        assert line.startswith(("ok       ", "MISMATCH ")), f"a line of the server's own: {line[:300]}"
        assert len(line) <= 1000, f"{len(line)} characters: {line[:300]}"
        assert "not llama-server " * 6 not in line, "a body was quoted past QUOTE_CHARS"


def test_the_default_config_against_its_fake_passes(stack_files):
    server = fake_llama_server(StackConfig())
    try:
        rc, lines, err, _ = run_main(server, stack_files)
    finally:
        server.close()
    assert (rc, err) == (0, "")
    assert [line.split()[0] for line in lines] == ["ok"] * len(verify.CHECKS)


PROPS = json.loads(llama_server_answers(StackConfig())["/props"].body)
NOT_HTTP = Reply(raw=b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
BROKEN = {
    "health not HTTP": {"/health": NOT_HTTP},
    "props not HTTP": {"/props": NOT_HTTP},
    "props hangs up": {"/props": Reply(hang_up=True)},
    "chat hangs up": {"/v1/chat/completions": Reply(hang_up=True)},
    "health HTML": {"/health": Reply(status=200, body=MARKER.encode(), content_type="text/html")},
    "props HTML": {"/props": Reply(status=200, body=MARKER.encode(), content_type="text/html")},
    "props 502 HTML": {"/props": Reply(status=502, body=MARKER.encode(), content_type="text/html")},
    "props not UTF-8": {"/props": Reply(body=b'{"model_alias": "\xff\xfe\xc3"}')},
    "props a JSON list": {"/props": Reply.json(200, [PROPS])},
    "props null fields": {
        "/props": Reply.json(
            200, {"total_slots": None, "default_generation_settings": None, "model_alias": None, "modalities": None}
        )
    },
    "props n_ctx a string": {"/props": Reply.json(200, {**PROPS, "default_generation_settings": {"n_ctx": "4096"}})},
    "props slots float": {"/props": Reply.json(200, {**PROPS, "total_slots": 8.0})},
    "props slots negative": {"/props": Reply.json(200, {**PROPS, "total_slots": -8})},
    "props slots huge": {"/props": Reply(body=b'{"total_slots": 1' + b"0" * 5000 + b"}")},
    "props slots 1e308": {"/props": Reply(body=b'{"total_slots": 1e308}')},
    "props slots Infinity": {"/props": Reply(body=b'{"total_slots": Infinity}')},
    "props slots a billion": {"/props": Reply.json(200, {**PROPS, "total_slots": 10**18})},
    "props alias huge": {"/props": Reply.json(200, {**PROPS, "model_alias": MARKER})},
    "props over the size limit": {"/props": Reply(body=b" " * (MAX_REPLY_BYTES + 1) + b"{}")},
    "slots a list of numbers": {"/slots": Reply.json(200, [1, 2])},
    "slots n_ctx null": {"/slots": Reply.json(200, [{"id": 0, "n_ctx": None}])},
    "chat error a string": {"/v1/chat/completions": Reply.json(400, {"error": "context too long"})},
    "chat error null": {"/v1/chat/completions": Reply.json(500, {"error": None})},
    "chat error message a list": {"/v1/chat/completions": Reply.json(500, {"error": {"message": [MARKER]}})},
    "chat usage a list": {"/v1/chat/completions": Reply.json(200, {"usage": [300, 8]})},
    "chat usage bools": {
        "/v1/chat/completions": Reply.json(200, {"usage": {"prompt_tokens": True, "completion_tokens": True}})
    },
    "chat usage negative": {
        "/v1/chat/completions": Reply.json(200, {"usage": {"prompt_tokens": -300, "completion_tokens": -8}})
    },
}


@pytest.mark.parametrize("routes", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_ends_with_a_mismatch_and_no_traceback(stack_files, routes):
    server = fake_llama_server(StackConfig(), **routes)
    try:
        rc, lines, err, _ = run_main(server, stack_files)
    finally:
        server.close()
    assert_fails_well(rc, lines, err)


@pytest.mark.parametrize(
    "routes",
    [{"/health": NOT_HTTP}, {"/props": NOT_HTTP}, {"/props": Reply(hang_up=True)}, {"/slots": Reply(hang_up=True)}],
    ids=["health", "props", "props hang-up", "slots hang-up"],
)
def test_a_reply_that_is_not_http_is_one_mismatch_that_ends_the_run(stack_files, routes):
    server = fake_llama_server(StackConfig(), **routes)
    try:
        rc, lines, err, _ = run_main(server, stack_files)
    finally:
        server.close()
    assert_fails_well(rc, lines, err)
    sentence, summary = [line for line in lines if line.startswith("MISMATCH")]
    (path,) = routes
    assert f"GET {path}:" in sentence and ("not HTTP" in sentence or "hung up" in sentence), sentence
    assert summary.endswith(" not run."), summary


@pytest.mark.parametrize(
    ("field", "value"),
    [("total_slots", True), ("total_slots", 1.0), ("total_slots", "1")],
)
def test_a_count_that_only_compares_equal_to_one_is_a_mismatch(one_slot_files, field, value):
    """With one slot, `true` and 1.0 are == 1 in Python; llama-server sends the integer."""
    c = load_stack(one_slot_files[0])
    props = json.loads(llama_server_answers(c)["/props"].body)
    server = fake_llama_server(c, **{"/props": Reply.json(200, {**props, field: value})})
    try:
        rc, lines, err, _ = run_main(server, one_slot_files)
    finally:
        server.close()
    assert_fails_well(rc, lines, err)
    assert any(line.startswith("MISMATCH server.parallel=1 but the server has ") for line in lines), lines


def test_the_same_props_with_the_integer_one_passes(one_slot_files):
    """The other side of the test above: the fake with the integer passes."""
    server = fake_llama_server(load_stack(one_slot_files[0]))
    try:
        rc, lines, _, _ = run_main(server, one_slot_files)
    finally:
        server.close()
    assert rc == 0, lines


def test_n_ctx_as_a_float_is_a_mismatch(stack_files):
    props = {**PROPS, "default_generation_settings": {"n_ctx": float(PROPS["default_generation_settings"]["n_ctx"])}}
    server = fake_llama_server(StackConfig(), **{"/props": Reply.json(200, props)})
    try:
        rc, lines, err, _ = run_main(server, stack_files)
    finally:
        server.close()
    assert_fails_well(rc, lines, err)
    assert any("(/props default_generation_settings.n_ctx)" in line for line in lines), lines


@pytest.mark.parametrize(
    "reply",
    [Reply(stall=True), Reply(body=b'{"status": "ok"}', trickle_seconds=0.3)],
    ids=["stall", "trickle"],
)
def test_a_stalled_or_trickled_reply_ends_within_the_time_bound(stack_files, reply):
    """A byte every 0.3 s never trips a socket timeout; the bound on the whole run still holds."""
    server = fake_llama_server(StackConfig(), **{"/health": reply})
    try:
        rc, lines, err, took = run_main(server, stack_files, "--timeout", "2")
    finally:
        server.close()
    assert_fails_well(rc, lines, err)
    assert took < 4, f"took {took:.1f} s with --timeout 2"
    assert "2 s" in lines[-2] and "health" in lines[-2], lines


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "86401"])
def test_a_time_bound_outside_its_range_is_refused(stack_files, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        verify.main(
            [
                "--url",
                "http://127.0.0.1:9",
                "--api-key-file",
                str(stack_files[1]),
                "--config",
                str(stack_files[0]),
                "--timeout",
                value,
            ]
        )
    assert exit_.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_the_time_bound_defaults_to_ten_minutes():
    assert verify.DEFAULT_TIMEOUT_SECONDS == 600


# Random JSON shapes for every route: what a server that is not llama-server, or a future one, might send.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
NUMBERISH = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=5), JSON
)
PROPS_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "total_slots": NUMBERISH,
        "default_generation_settings": st.one_of(JSON, st.fixed_dictionaries({}, optional={"n_ctx": NUMBERISH})),
        "model_alias": st.one_of(st.just(StackConfig().server.alias), JSON),
        "modalities": st.one_of(JSON, st.fixed_dictionaries({}, optional={"vision": JSON})),
    },
)
USAGE_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "usage": st.one_of(
            JSON, st.fixed_dictionaries({}, optional={"prompt_tokens": NUMBERISH, "completion_tokens": NUMBERISH})
        )
    },
)
STATUSES = st.sampled_from([200, 200, 200, 400, 401, 404, 500])


def replies(shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[Reply]:
    return st.builds(Reply.json, STATUSES, st.one_of(shapes, JSON))


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RawServer]:
    server = fake_llama_server(StackConfig())
    yield server
    server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    health=replies(st.just({"status": "ok"})),
    props=replies(PROPS_SHAPES),
    slots=replies(st.lists(st.fixed_dictionaries({}, optional={"n_ctx": NUMBERISH}), max_size=3)),
    chat=replies(USAGE_SHAPES),
)
def test_random_json_on_every_route_never_gives_a_traceback(shared_server, stack_files, health, props, slots, chat):
    shared_server.routes.update({"/health": health, "/props": props, "/slots": slots, "/v1/chat/completions": chat})
    rc, lines, err, _ = run_main(shared_server, stack_files)
    if rc == 0:
        assert [line.split()[0] for line in lines] == ["ok"] * len(verify.CHECKS), lines
    else:
        assert_fails_well(rc, lines, err)


# --- the bounds, on both sides -----------------------------------------------------------------


def test_a_quote_is_cut_past_its_limit_and_not_at_it():
    assert clip("x" * QUOTE_CHARS) == "x" * QUOTE_CHARS
    assert clip("x" * (QUOTE_CHARS + 1)) == "x" * QUOTE_CHARS + f"... ({QUOTE_CHARS + 1} characters)"
    assert clip("a\nMISMATCH b\x1b[2J") == "a\\nMISMATCH b\\x1b[2J"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (MAX_COUNT, MAX_COUNT), (MAX_COUNT + 1, None), (-1, None), (True, None), (False, None), (1.0, None)],
)
def test_a_count_is_a_plain_integer_within_its_range(value, expected):
    assert count(value) == expected


@pytest.mark.parametrize(("padding", "passes"), [(0, True), (1, False)])
def test_a_reply_of_exactly_the_size_limit_is_read_and_one_byte_more_is_not(stack_files, padding, passes):
    body = json.dumps(PROPS).encode()
    server = fake_llama_server(
        StackConfig(), **{"/props": Reply(body=body + b" " * (MAX_REPLY_BYTES - len(body) + padding))}
    )
    try:
        rc, lines, err, _ = run_main(server, stack_files)
    finally:
        server.close()
    if passes:
        assert rc == 0, lines
    else:
        assert_fails_well(rc, lines, err)
        assert f"over {MAX_REPLY_BYTES} bytes" in lines[-2]


@pytest.mark.parametrize("value", ["0.5", "86400"])
def test_a_time_bound_within_its_range_is_taken(stack_files, value):
    """The other side of the refused bounds: nothing listens on the port, so the run ends at once."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = verify.main(
            [
                "--url",
                "http://127.0.0.1:9",
                "--api-key-file",
                str(stack_files[1]),
                "--config",
                str(stack_files[0]),
                "--timeout",
                value,
            ]
        )
    assert rc == 1
    assert out.getvalue().startswith("MISMATCH cannot reach http://127.0.0.1:9 ("), out.getvalue()


@pytest.mark.parametrize(("content", "error"), [(None, "FileNotFoundError"), (b"\xff\xfe key", "UnicodeDecodeError")])
def test_a_key_file_that_cannot_be_read_is_one_mismatch_line(tmp_path, capsys, content, error):
    from tests.conftest import ROOT

    key = tmp_path / "api-key"
    if content is not None:
        key.write_bytes(content)
    rc = verify.main(
        ["--url", "http://127.0.0.1:9", "--api-key-file", str(key), "--config", str(ROOT / "Pulumi.dev.yaml")]
    )
    assert rc == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"MISMATCH --api-key-file={key} cannot be read ({error}); give the file holding the stack's apiKey."
    )


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_answer_and_the_key_never_follows_it(status):
    """urllib would follow a redirect with the Authorization header, to any host: the client
    stops at it, so the key reaches only the address the user gave."""
    elsewhere = RawServer(routes={"/props": Reply.json(200, {})})
    redirect = Reply(
        status=status,
        raw=(
            f"HTTP/1.1 {status} Moved\r\nLocation: {elsewhere.base}/props\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    server = RawServer(routes={"/props": redirect})
    try:
        got, _ = Client(server.base, "secret-key", timeout_seconds=10).request("/props")
    finally:
        server.close()
        elsewhere.close()
    assert got == status
    assert [r[2].get("authorization") for r in server.requests] == ["Bearer secret-key"]
    assert elsewhere.requests == []
