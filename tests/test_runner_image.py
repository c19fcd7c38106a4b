"""image/runner/: prod's runner image. Its entrypoint runs against a fake GitHub API on 127.0.0.1
and fake config.sh/run.sh that record what they get: the request, the arguments, the environment,
and every process that shows the PAT or the registration token in its argument list."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bootstrap import plan, runner_image
from core.config import Image
from core.image import IMAGE_DIR, content_tag
from tests.conftest import ROOT, bare_path, pinned_pulumi, run_make
from tests.httpfiles import ScriptedServer, pids_with_in_argv

RUNNER_DIR = ROOT / "image" / "runner"
ENTRYPOINT = RUNNER_DIR / "entrypoint.sh"
PAT = "ghp_fakePatForTheRunnerTest0123456789"
TOKEN = "AABBCCREGISTRATIONTOKEN0123456789"
PATH_ = "/orgs/example-org/actions/runners/registration-token"


@dataclass
class FakeGitHub(ScriptedServer):
    """GitHub's registration-token endpoint: 201 with the token, or what GitHub answers otherwise.
    While a request is open (curl is running), it notes every process with the PAT in its argv."""

    status: int = 201
    body: str = json.dumps({"token": TOKEN, "expires_at": "2026-12-06T10:13:35.123-08:00"})
    content_type: str = "application/json; charset=utf-8"
    pat_in_argv: list[str] = field(default_factory=list)

    def seen(self) -> None:
        self.pat_in_argv.extend(pids_with_in_argv(PAT))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH_}"


# The fakes write their arguments and environment as JSON, and note every process that shows a
# secret in its argument list while they run (config.sh runs while the token is live).
FAKE = """#!/usr/bin/env python3
import json, os, sys
sys.path.insert(0, {root!r})
from tests.httpfiles import ScriptedServer, pids_with_in_argv
seen = [p for s in ({pat!r}, {token!r}) for p in pids_with_in_argv(s)]
with open({out!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "secret_in_argv": seen}}, f)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def github():
    server = FakeGitHub()
    yield server
    server.close()


@pytest.fixture
def runner_home(tmp_path: Path) -> Path:
    for name in ("config", "run"):
        script = tmp_path / f"{name}.sh"
        script.write_text(FAKE.format(root=str(ROOT), pat=PAT, token=TOKEN, out=str(tmp_path / f"{name}.json")))
        script.chmod(0o755)
    return tmp_path


def runner_env(url: str) -> dict[str, str]:
    c = plan.BootstrapConfig.model_validate(
        {
            "owner": "example-org",
            "repository": "llamacpp-aks",
            "prodReviewers": {"users": [1]},
            "prodRunnerLabel": "prod-deployer",
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ACTIONS_"))}
    return {**env, **plan.runner_environment(c), "REGISTRATION_TOKEN_API_URL": url, "GITHUB_PAT": PAT}


def start(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENTRYPOINT)], cwd=home, env=env, capture_output=True, text=True, timeout=60, check=False)


def recorded(home: Path, name: str) -> dict[str, Any] | None:
    path = home / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_asks_github_for_a_registration_token_with_the_pat_as_a_bearer_header(github, runner_home):
    result = start(runner_home, runner_env(github.url))
    assert result.returncode == 0, result.stderr
    (request,) = github.requests
    assert (request["method"], request["path"]) == ("POST", PATH_)
    assert request["authorization"] == f"Bearer {PAT}"
    assert request["accept"] == "application/vnd.github+json"
    assert request["x-github-api-version"] == "2022-11-28"


def test_registers_one_ephemeral_runner_in_the_group_with_the_label_then_runs_it(github, runner_home):
    result = start(runner_home, runner_env(github.url))
    assert result.returncode == 0, result.stderr
    config = recorded(runner_home, "config")
    assert config is not None
    assert config["argv"] == [
        "--unattended",
        "--ephemeral",
        "--url",
        "https://github.com/example-org",
        "--runnergroup",
        "llamacpp-prod",
        "--labels",
        "prod-deployer",
    ]
    # The token reaches config.sh in the variable the runner reads in place of --token.
    assert config["env"]["ACTIONS_RUNNER_INPUT_TOKEN"] == TOKEN
    run = recorded(runner_home, "run")
    assert run is not None and run["argv"] == []


def test_no_secret_is_in_any_argument_list_and_the_job_inherits_neither(github, runner_home):
    result = start(runner_home, runner_env(github.url))
    assert result.returncode == 0, result.stderr
    assert github.pat_in_argv == []  # while curl asked GitHub
    config, run = recorded(runner_home, "config"), recorded(runner_home, "run")
    assert config is not None and run is not None
    assert config["secret_in_argv"] == [] and run["secret_in_argv"] == []
    assert "GITHUB_PAT" not in config["env"]
    # run.sh starts every job step: neither the PAT nor the token is in its environment.
    assert PAT not in json.dumps(run["env"]) and TOKEN not in json.dumps(run["env"])
    assert PAT not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr


def test_the_argv_watch_would_see_a_pat_given_to_curl_as_an_argument(github, runner_home):
    # The same entrypoint with the header on curl's command line: the watch must catch it.
    leaky = runner_home / "leaky-entrypoint.sh"
    text = ENTRYPOINT.read_text()
    piped = "--header @- --header 'Accept"
    assert text.count(piped) == 1
    leaky.write_text(text.replace(piped, '--header "Authorization: Bearer $GITHUB_PAT" --header \'Accept'))
    leaky.chmod(0o755)
    subprocess.run(
        [str(leaky)], cwd=runner_home, env=runner_env(github.url), capture_output=True, timeout=60, check=False
    )
    assert github.pat_in_argv


@pytest.mark.parametrize(
    ("status", "body", "sentence"),
    [
        (401, '{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}', "answered 401"),
        (403, '{"message":"Resource not accessible by personal access token"}', "answered 403"),
        (404, '{"message":"Not Found"}', "answered 404"),
        (422, '{"message":"Validation Failed","errors":[]}', "answered 422"),
        (502, "<html><body>Bad Gateway</body></html>", "answered HTTP 502"),
        (200, '{"message":"ok"}', "but no registration token"),
        (201, '{"token":"ab;rm -rf /"}', "but no registration token"),
    ],
)
def test_a_github_error_is_one_sentence_and_nothing_registers(github, runner_home, status, body, sentence):
    github.status, github.body = status, body
    result = start(runner_home, runner_env(github.url))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prod runner: ") and sentence in lines[0], result.stderr
    assert PAT not in result.stderr
    assert recorded(runner_home, "config") is None and recorded(runner_home, "run") is None


def test_a_silent_github_is_given_up_after_the_limit(github, runner_home):
    github.delay = 10
    env = {**runner_env(github.url), "GITHUB_API_TIMEOUT_SECONDS": "1"}
    result = start(runner_home, env)
    assert result.returncode == 1 and "did not answer" in result.stderr and "within 1 s" in result.stderr
    assert recorded(runner_home, "config") is None


def test_an_unreachable_api_is_one_sentence(runner_home):
    with socket_closed_port() as port:
        result = start(runner_home, runner_env(f"http://127.0.0.1:{port}{PATH_}"))
    assert result.returncode == 1 and "could not reach" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def socket_closed_port() -> Any:
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed() -> Any:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        yield port

    return closed()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.github.com" + PATH_,  # clear text to the real host
        "http://127.0.0.1.example.com" + PATH_,  # starts like loopback
        "http://localhost" + PATH_,
        "HTTPS://api.github.com" + PATH_,
        "ftp://api.github.com" + PATH_,
        "https://api.github.com",  # no path at all
    ],
)
def test_the_pat_is_sent_only_over_https_or_to_loopback(github, runner_home, url):
    result = start(runner_home, runner_env(url))
    assert result.returncode == 1 and "REGISTRATION_TOKEN_API_URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and PAT not in result.stderr
    assert github.requests == []


def test_loopback_with_a_port_is_accepted_for_the_fake(github, runner_home):
    assert re.match(r"^http://127\.0\.0\.1:\d+/", github.url)
    assert start(runner_home, runner_env(github.url)).returncode == 0


@pytest.mark.parametrize(
    "missing", ["GITHUB_PAT", "REGISTRATION_TOKEN_API_URL", "GH_URL", "RUNNER_GROUP", "RUNNER_LABELS"]
)
def test_a_missing_variable_is_named_before_anything_is_asked(github, runner_home, missing):
    env = runner_env(github.url)
    env[missing] = ""
    result = start(runner_home, env)
    assert result.returncode == 1 and result.stderr.startswith(f"prod runner: {missing} is empty")
    assert github.requests == []


@pytest.mark.parametrize(
    ("timeout", "ok"), [("1", True), ("9999", True), ("0", False), ("10000", False), ("5s", False)]
)
def test_the_api_limit_is_whole_seconds_from_1_to_9999(github, runner_home, timeout, ok):
    result = start(runner_home, {**runner_env(github.url), "GITHUB_API_TIMEOUT_SECONDS": timeout})
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "GITHUB_API_TIMEOUT_SECONDS" in result.stderr


def test_a_failing_config_sh_stops_before_run_sh(github, runner_home):
    result = start(runner_home, {**runner_env(github.url), "FAKE_EXIT": "3"})
    assert result.returncode == 1 and "config.sh could not register the runner" in result.stderr
    assert recorded(runner_home, "run") is None


# --- the Dockerfile -------------------------------------------------------------------------


def test_the_image_starts_from_the_official_runner_by_digest_and_runs_the_entrypoint_as_the_runner():
    dockerfile = (RUNNER_DIR / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, flags=re.M)
    digest = re.search(r"^ARG RUNNER_DIGEST=(sha256:[0-9a-f]{64})$", dockerfile, flags=re.M)
    assert digest and base == "ghcr.io/actions/actions-runner:${RUNNER_VERSION}@${RUNNER_DIGEST}"
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users[-1] == "1001"  # the base image's runner user (uid 1001), never root
    assert 'ENTRYPOINT ["/usr/local/bin/runner-entrypoint"]' in dockerfile
    assert "COPY --chmod=0555 entrypoint.sh /usr/local/bin/runner-entrypoint" in dockerfile
    assert "curl |" not in dockerfile and "| bash" not in dockerfile and "| sh" not in dockerfile


def test_the_image_drops_the_base_images_passwordless_sudo():
    dockerfile = (RUNNER_DIR / "Dockerfile").read_text()
    assert "gpasswd --delete runner sudo" in dockerfile


def test_setup_python_finds_its_tool_cache_where_its_builds_were_compiled_and_may_write_it():
    dockerfile = (RUNNER_DIR / "Dockerfile").read_text()
    assert "install --directory --owner=runner --mode=0755 /opt/hostedtoolcache" in dockerfile
    assert "ENV AGENT_TOOLSDIRECTORY=/opt/hostedtoolcache" in dockerfile
    assert "RUNNER_TOOL_CACHE=/opt/hostedtoolcache" in dockerfile


def test_the_build_context_holds_only_what_the_dockerfile_copies():
    ignore = (RUNNER_DIR / ".dockerignore").read_text().split()
    assert ignore[0] == "*" and {line[1:] for line in ignore[1:]} == {"Dockerfile", "entrypoint.sh"}


def test_a_change_in_the_runner_image_leaves_the_servers_content_tag_alone(tmp_path):
    image = tmp_path / "image"
    shutil.copytree(IMAGE_DIR, image)
    before = content_tag(Image(), image)
    (image / "runner" / "entrypoint.sh").write_text("#!/bin/sh\nexit 0\n")
    assert content_tag(Image(), image) == before
    (image / "drain.sh").write_text("#!/bin/sh\nexit 0\n")  # the server's own files still count
    assert content_tag(Image(), image) != before


# --- make runner-image ------------------------------------------------------------------------

REGISTRY = "llamacppcirunnerabc123.azurecr.io"
DIGEST = "sha256:" + "ab" * 32


def make_runner_image(tmp_path: Path, *, in_registry: bool = False, build_rc: int = 0, printed: str = DIGEST):
    """`make runner-image` with stub pulumi (bootstrap's output) and az (ACR Tasks) that log their calls."""
    az_log, pulumi_log, built = tmp_path / "az.log", tmp_path / "pulumi.log", tmp_path / "built"
    if in_registry:
        built.touch()
    az = f"""echo "$*" >> {az_log}
case "$*" in
  "acr build "*) echo "streamed build log"; [ {build_rc} = 0 ] && : > {built}; exit {build_rc} ;;
  "acr repository show "*) [ -e {built} ] || {{ echo "ERROR: manifest unknown" >&2; exit 1; }}; echo "{printed}" ;;
esac"""
    pulumi = f"""[ "$1" = version ] && {{ echo v{pinned_pulumi()}; exit 0; }}
echo "$*" >> {pulumi_log}
[ "$1 $2" = "stack output" ] && echo {REGISTRY}
exit 0"""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "venv" / ".installed").touch()
    (venv_bin / "python").write_text(f'#!/bin/bash\nexec {ROOT / ".venv" / "bin" / "python"} "$@"\n')
    (venv_bin / "python").chmod(0o755)
    path = bare_path(tmp_path, {"az": az, "pulumi": pulumi})
    rc, output, _ = run_make(tmp_path, path, "runner-image", env={"PULUMI_CONFIG_PASSPHRASE": "p"})
    calls = az_log.read_text().splitlines() if az_log.exists() else []
    return rc, output, calls, pulumi_log.read_text().splitlines()


def test_make_runner_image_builds_into_bootstraps_registry_and_prints_the_pinned_image(tmp_path):
    rc, output, calls, pulumi_calls = make_runner_image(tmp_path)
    assert rc == 0, output
    assert "stack output prodRunnerRegistry --stack ci" in pulumi_calls
    tag = runner_image.content_tag()
    show = f"acr repository show --name llamacppcirunnerabc123 --image gh-runner:{tag} --query digest -o tsv"
    build = (
        f"acr build --registry llamacppcirunnerabc123 --image gh-runner:{tag} --platform linux/amd64 "
        "--file image/runner/Dockerfile image/runner"
    )
    assert calls == [show, build, show]
    assert f"prodRunner.image: {REGISTRY}/gh-runner@{DIGEST}" in output.splitlines()
    assert f"pulumi config set --path prodRunner.image {REGISTRY}/gh-runner@{DIGEST} --stack ci" in output
    # What it prints is what bootstrap accepts.
    plan.ProdRunner(image=f"{REGISTRY}/gh-runner@{DIGEST}")


def test_make_runner_image_finds_an_unchanged_image_without_building_it(tmp_path):
    rc, output, calls, _ = make_runner_image(tmp_path, in_registry=True)
    assert rc == 0, output
    assert [c.split()[1] for c in calls] == ["repository"]
    assert f"prodRunner.image: {REGISTRY}/gh-runner@{DIGEST}" in output


def test_a_failed_build_is_one_sentence(tmp_path):
    rc, output, calls, _ = make_runner_image(tmp_path, build_rc=1)
    assert [c.split()[1] for c in calls] == ["repository", "build"]
    assert rc != 0 and "az acr build failed (its log is above)" in output
    assert "prodRunner.image:" not in output


@pytest.mark.parametrize("printed", ["", "sha256:" + "ab" * 31 + "a", "SHA256:" + "AB" * 32, "ERROR: unauthorized"])
def test_anything_but_a_digest_is_refused_with_a_sentence(tmp_path, printed):
    rc, output, _, _ = make_runner_image(tmp_path, in_registry=True, printed=printed)
    assert rc != 0 and "instead of an image digest" in output and "prodRunner.image:" not in output


@pytest.mark.parametrize(
    "registry",
    [
        "",
        "llamacppcirunnerabc123.azurecr.io.example.com",
        "LLAMACPP.azurecr.io",
        "abcd.azurecr.io",
        "https://x1234.azurecr.io",
    ],
)
def test_a_registry_that_is_not_a_login_server_is_named(registry):
    with pytest.raises(SystemExit, match="is not a registry's login server"):
        runner_image.main(["--registry", registry, "--dry-run"])


def test_the_image_tag_follows_every_file_of_image_runner(tmp_path):
    shutil.copytree(RUNNER_DIR, tmp_path / "image" / "runner")
    before = runner_image.content_tag(tmp_path)
    assert before == runner_image.content_tag()
    (tmp_path / "image" / "runner" / "entrypoint.sh").write_text("changed\n")
    assert runner_image.content_tag(tmp_path) != before
