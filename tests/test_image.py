"""The image: the push credential of the local builder, and the ACR Tasks builder."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.image import acr_refresh_token
from core.config import StackConfig
from core.image import (
    ACR_BUILD_TIMEOUT_SECONDS,
    acr_build_script,
    build_args,
    content_tag,
    digest_ref,
)
from tests.conftest import ROOT, of_type, one, run_stack

COMMAND = "command:local:Command"
DOCKER_IMAGE = "docker:index/image:Image"
REGISTRY = "azure-native:containerregistry:Registry"
DIGEST = "sha256:" + "d" * 64


def test_token_exchange_posts_the_form_acr_expects():
    seen: dict[str, object] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen["path"] = self.path
            seen["form"] = dict(urllib.parse.parse_qsl(body))
            payload = json.dumps({"refresh_token": "acr-refresh-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        login_server = f"127.0.0.1:{server.server_address[1]}"
        token = acr_refresh_token(login_server, "tenant-id", "arm-token", scheme="http")
    finally:
        server.shutdown()
        server.server_close()
    assert token == "acr-refresh-token"
    assert seen["path"] == "/oauth2/exchange"
    assert seen["form"] == {
        "grant_type": "access_token",
        "service": login_server,
        "tenant": "tenant-id",
        "access_token": "arm-token",
    }


# --- the acr builder -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def acr() -> Any:
    return run_stack({"image": {"builder": "acr"}})


def acr_build(mocks: Any) -> dict[str, Any]:
    (build,) = [r.inputs for r in of_type(mocks, COMMAND) if r.name == "image-acr-build"]
    return build


def test_acr_builder_builds_in_the_registry_not_with_docker(acr):
    assert not of_type(acr, DOCKER_IMAGE)
    builds = [r.name for r in of_type(acr, COMMAND) if not r.name.endswith("-ready")]
    assert builds == ["image-acr-build"]


def test_acr_build_has_the_content_tag_the_script_and_the_registry(acr):
    config = StackConfig().image
    build = acr_build(acr)
    tag = content_tag(config)
    assert build == {
        "create": acr_build_script(config),
        "environment": {
            "IMAGE": f"llama-server:{tag}",
            "LOGIN_SERVER": f"{one(acr, REGISTRY)['registryName']}.azurecr.io",
        },
        "triggers": [tag],
    }


def test_unchanged_image_directory_gives_the_acr_build_the_same_inputs(acr):
    assert acr_build(run_stack({"image": {"builder": "acr"}})) == acr_build(acr)


def test_acr_build_script_passes_context_platform_args_and_timeout():
    config = StackConfig().image
    build_line = next(line.strip() for line in acr_build_script(config).splitlines() if "az acr build" in line)
    words = shlex.split(build_line)
    expected_args = [f"{k}={v}" for k, v in build_args(config).items()]
    assert words[words.index("--platform") + 1] == "linux/amd64"
    assert words[words.index("--timeout") + 1] == str(ACR_BUILD_TIMEOUT_SECONDS)
    assert [words[i + 1] for i, w in enumerate(words) if w == "--build-arg"] == expected_args
    assert words[-2:] == ["image", ">&2"]


def run_script_with_fake_az(tmp_path: Path, az_body: str) -> subprocess.CompletedProcess[str]:
    """Runs the build script as Pulumi would (/bin/sh -c, from the project root) with a fake `az`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "az.log"}\n{az_body}\n')
    (bin_dir / "az").chmod(0o755)
    return subprocess.run(
        ["/bin/sh", "-c", acr_build_script(StackConfig().image)],
        cwd=ROOT,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOGIN_SERVER": "myacr.azurecr.io", "IMAGE": "llama-server:t1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_acr_build_script_prints_only_the_digest_of_the_tag_it_built(tmp_path: Path):
    # The tag is missing until the build pushes it.
    built = tmp_path / "built"
    fake = (
        f'case "$1 $2" in "acr build") echo "build log"; touch {built};; '
        f'"acr repository") [ -e {built} ] || exit 1; echo {DIGEST};; esac'
    )
    result = run_script_with_fake_az(tmp_path, fake)
    calls = (tmp_path / "az.log").read_text().splitlines()
    assert (result.returncode, result.stdout) == (0, f"{DIGEST}\n"), result.stderr
    assert [c.split()[:4] for c in calls] == [
        ["acr", "repository", "show", "--name"],
        ["acr", "build", "--registry", "myacr"],
        ["acr", "repository", "show", "--name"],
    ]
    assert calls[2].endswith("--image llama-server:t1 --query digest --output tsv")


def test_acr_build_script_reuses_a_tag_already_in_the_registry(tmp_path: Path):
    # A rerun after a failure past the build (or a tag an image job built) costs no second hour.
    result = run_script_with_fake_az(tmp_path, f'[ "$2" = repository ] && echo {DIGEST}')
    calls = (tmp_path / "az.log").read_text().splitlines()
    assert (result.returncode, result.stdout) == (0, f"{DIGEST}\n"), result.stderr
    assert [c.split()[:3] for c in calls] == [["acr", "repository", "show"]]


def test_acr_build_script_stops_when_the_build_fails(tmp_path: Path):
    result = run_script_with_fake_az(tmp_path, 'if [ "$2" = build ] || [ "$2" = repository ]; then exit 1; fi; echo x')
    assert (result.returncode, result.stdout) == (1, "")


def test_digest_ref_pins_the_image_by_digest():
    assert digest_ref("myacr.azurecr.io", "llama-server", f"{DIGEST}\n") == f"myacr.azurecr.io/llama-server@{DIGEST}"


def test_digest_ref_rejects_output_that_is_not_a_digest():
    with pytest.raises(ValueError, match="instead of an image digest"):
        digest_ref("myacr.azurecr.io", "llama-server", "ERROR: the registry was not found\n")


def test_deployment_runs_the_acr_build_by_digest(acr):
    login_server = f"{one(acr, REGISTRY)['registryName']}.azurecr.io"
    containers = one(acr, "kubernetes:apps/v1:Deployment")["spec"]["template"]["spec"]["containers"]
    server = next(c for c in containers if c["name"] == "llama-server")
    assert server["image"].startswith(f"{login_server}/llama-server@sha256:")


def test_dockerfile_builds_from_the_digests_the_catalog_pins():
    from core.catalog import CUDA_BASE_DIGESTS
    from core.config import Image
    from core.image import IMAGE_DIR, build_args

    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    devel, runtime = CUDA_BASE_DIGESTS[Image().cuda_version]
    assert f"ARG CUDA_DEVEL_DIGEST={devel}\n" in dockerfile and f"ARG CUDA_RUNTIME_DIGEST={runtime}\n" in dockerfile
    assert "-devel-ubuntu24.04@${CUDA_DEVEL_DIGEST}" in dockerfile
    assert "-runtime-ubuntu24.04@${CUDA_RUNTIME_DIGEST}" in dockerfile
    args = build_args(Image())
    assert (args["CUDA_DEVEL_DIGEST"], args["CUDA_RUNTIME_DIGEST"]) == (devel, runtime)


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "image").glob("Dockerfile*")), ids=lambda p: p.name)
def test_every_file_a_dockerfile_copies_is_in_the_build_context(dockerfile):
    """image/.dockerignore leaves out everything it does not name back in (`*`, then `!file`): a
    COPY of a file it leaves out fails the build, on ACR Tasks and a local Docker alike."""
    ignore = (ROOT / "image" / ".dockerignore").read_text().split()
    assert ignore[0] == "*"
    admitted = {line[1:] for line in ignore[1:] if line.startswith("!")}
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from"):
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            assert set(sources) <= admitted, f"{dockerfile.name}: {line!r} copies what .dockerignore leaves out"
