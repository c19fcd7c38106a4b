"""CI is least-privilege: previews are read-only, passphrases are per environment, deploys are never
cancelled, prod deploys from a runner that can reach its API server, and the role condition
in docs/ci-cd.md names exactly the roles the stack grants."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from core import catalog
from tests.conftest import ROOT, WORKFLOWS


def jobs(name: str) -> dict[str, dict[str, Any]]:
    return yaml.safe_load((WORKFLOWS / name).read_text())["jobs"]


def logins(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s["with"] for s in job["steps"] if str(s.get("uses", "")).startswith("Azure/login@")]


def test_previews_log_in_as_the_read_only_identity():
    (login,) = logins(jobs("pull-request.yml")["preview"])
    assert login["client-id"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"


STACKS = ("dev", "prod")
UP_JOBS = tuple(f"up-{stack}" for stack in STACKS)
IMAGE_JOBS = tuple(f"image-{stack}" for stack in STACKS)


def test_deploys_log_in_as_the_deploy_identity():
    for name in UP_JOBS + IMAGE_JOBS:
        (login,) = logins(jobs("deploy.yml")[name])
        assert login["client-id"] == "${{ vars.AZURE_CLIENT_ID }}", name


def test_pull_requests_never_run_in_the_prod_environment():
    for job in jobs("pull-request.yml").values():
        assert "prod" not in str(job.get("environment", "")), job


def test_every_passphrase_comes_from_an_environment_secret_of_its_job():
    for name in ("pull-request.yml", "deploy.yml"):
        for job in jobs(name).values():
            passphrase = (job.get("env") or {}).get("PULUMI_CONFIG_PASSPHRASE")
            if passphrase:
                assert job.get("environment"), f"{name}: a job reads the passphrase outside an environment"


def test_previews_and_deploys_never_share_a_concurrency_group():
    preview = jobs("pull-request.yml")["preview"]["concurrency"]["group"]
    deploy = jobs("deploy.yml")
    assert preview.startswith("preview-")
    assert [deploy[name]["concurrency"]["group"] for name in UP_JOBS + IMAGE_JOBS] == [
        "deploy-dev",
        "deploy-prod",
        "image-dev",
        "image-prod",
    ]


def test_nothing_cancels_a_deploy_or_an_image_build():
    for name, job in jobs("deploy.yml").items():
        if name == "preflight":  # read-only: runs beside any other run, and nothing replaces it
            assert "concurrency" not in job
            continue
        assert job["concurrency"]["cancel-in-progress"] is False, name


def test_prod_deploys_only_on_a_runner_of_prods_group_and_builds_its_image_on_a_hosted_one():
    deploy = jobs("deploy.yml")
    assert deploy["up-prod"]["runs-on"] == {
        "group": "${{ vars.PROD_RUNNER_GROUP }}",
        "labels": "${{ vars.PROD_RUNNER_LABEL }}",
    }
    # The image jobs never reach an API server: hosted runners (deploy.yml says why that is safe).
    assert deploy["up-dev"]["runs-on"] == deploy["image-dev"]["runs-on"] == deploy["image-prod"]["runs-on"]
    assert deploy["image-prod"]["runs-on"] == "ubuntu-24.04"
    # No prod job names a bare label any runner could carry.
    for name, job in deploy.items():
        assert job["runs-on"] != "${{ vars.PROD_RUNNER_LABEL }}", name


# --- image builds: their own job per stack, before that stack's up ---------------------------


def test_each_up_waits_for_its_own_image_job_and_prods_image_starts_at_once():
    deploy = jobs("deploy.yml")
    assert set(deploy) == {*UP_JOBS, *IMAGE_JOBS, "preflight"}
    assert deploy["up-dev"]["needs"] == ["preflight", "image-dev"]
    assert set(deploy["up-prod"]["needs"]) == {"preflight", "up-dev", "image-prod"}  # dev first, then prod
    # Prod's build runs beside dev's jobs, so prod's up never waits an hour for it after dev.
    assert "needs" not in deploy["image-dev"] and "needs" not in deploy["image-prod"]


def test_both_stacks_run_the_same_steps_with_their_own_stack_and_environment():
    deploy = jobs("deploy.yml")
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert text.count("steps: *up-steps") == 1 and text.count("steps: *image-steps") == 1
    for kind in ("up", "image"):
        dev, prod = deploy[f"{kind}-dev"], deploy[f"{kind}-prod"]
        assert dev["steps"] == prod["steps"]
        assert {**dev["env"], "STACK": "x"} == {**prod["env"], "STACK": "x"}, f"{kind}: env blocks differ"
        for stack, job in (("dev", dev), ("prod", prod)):
            assert job["environment"] == job["env"]["STACK"] == stack


def test_the_image_job_installs_exactly_what_it_imports():
    from tools.image_job import REQUIREMENTS

    (install,) = [s for s in jobs("deploy.yml")["image-dev"]["steps"] if "lock_subset.py" in s.get("run", "")]
    words = install["run"].replace("\\\n", " ").split()
    start = words.index("requirements.lock.txt") + 1
    assert tuple(words[start : words.index(">")]) == REQUIREMENTS
    assert "--require-hashes --no-deps --only-binary :all:" in " ".join(words)  # no package's build code runs
    (job,) = [s for s in jobs("deploy.yml")["image-dev"]["steps"] if "-m tools.image_job" in s.get("run", "")]
    assert '--config "Pulumi.$STACK.yaml"' in job["run"]


def test_ci_doc_role_condition_names_exactly_the_roles_the_stack_grants():
    readme = (ROOT / "docs" / "ci-cd.md").read_text()
    (listed,) = re.findall(r'^\s*ROLES="([^"]+)"', readme, flags=re.MULTILINE)
    assert {r.strip() for r in listed.split(",")} == set(catalog.STACK_GRANTED_ROLES)


# --- the first real run: stacks, pinned tools, one comment -----------------------------------


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def all_jobs() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{n}:{j}", job) for n in ("pull-request.yml", "deploy.yml") for j, job in jobs(n).items()]


def test_deploys_create_their_stack_on_the_first_run():
    # pulumi/actions v7.0.0 only selects an existing stack unless upsert is on (src/main.ts), and
    # nothing else creates dev or prod in the state container.
    for name in UP_JOBS:
        (up,) = [s for s in steps_using(jobs("deploy.yml")[name], "pulumi/actions") if "command" in s["with"]]
        assert str(up["with"].get("upsert")).lower() == "true", name


def test_a_stack_ci_created_finds_its_passphrase_salt_in_the_state():
    # The stack file with the salt CI's first run wrote is not committed back (github.com/pulumi/pulumi/issues/17236).
    for name, job in all_jobs():
        if (job.get("env") or {}).get("PULUMI_CONFIG_PASSPHRASE"):
            assert job["env"].get("PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER") == "true", name


def test_every_job_that_installs_pulumi_pins_the_cli_to_the_sdk_version():
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert sdk
    for name, job in all_jobs():
        for step in steps_using(job, "pulumi/actions"):
            assert step["with"].get("pulumi-version") == "${{ env.PULUMI_VERSION }}", name
            assert job["env"]["PULUMI_VERSION"] == sdk[1], name


def test_kubelogin_is_a_pinned_version_checked_against_the_go_checksum_database():
    for name, job in all_jobs():
        text = json.dumps(job["steps"])
        assert "az aks install-cli" not in text, f"{name}: unpinned kubectl and kubelogin"
        if "kubelogin" not in text:
            continue
        assert re.fullmatch(r"v\d+\.\d+\.\d+", job["env"]["KUBELOGIN_VERSION"]), name
        (install,) = [s for s in job["steps"] if "go install" in s.get("run", "")]
        assert 'github.com/Azure/kubelogin@$KUBELOGIN_VERSION"' in install["run"], name
        # Go's checksum database is on unless something turns it off.
        env = {**job.get("env", {}), **install.get("env", {})}
        assert not {"GOSUMDB", "GONOSUMDB", "GONOSUMCHECK", "GOPRIVATE", "GOINSECURE", "GOFLAGS"} & set(env), name
        assert "GOSUMDB" not in install["run"] and "-insecure" not in install["run"], name


def test_the_preview_is_one_comment_found_by_its_marker():
    preview = jobs("pull-request.yml")["preview"]
    text = json.dumps(preview["steps"])
    assert "--edit-last" not in text, "edits the bot's last comment: Pulumi's, overwritten on every push"
    for step in steps_using(preview, "pulumi/actions"):
        assert str(step["with"].get("comment-on-pr", "false")).lower() == "false"
    assert "-m tools.pr_comment" in text


# --- tokens: a model of a run's timeline -----------------------------------------------------

# GitHub's ID token lives 5 minutes (decoded in github.com/Azure/login/issues/372; github.com/Azure/azure-cli/issues/28737); an Entra
# access token 60-90 minutes (learn.microsoft.com/entra/identity-platform/access-tokens), the
# shortest taken here.
ID_TOKEN_SECONDS = 300
ACCESS_TOKEN_SECONDS = 3600
# Step lengths in seconds: `make venv` measured at 7.0 min (README, Measurements); building
# kubelogin with `go install` and `az aks install-cli` estimated; any other step 10 s.
VENV_SECONDS, GO_INSTALL_SECONDS, INSTALL_CLI_SECONDS, STEP_SECONDS = 420, 120, 60, 10
# Token requests after Pulumi starts, in seconds: the state backend at `pulumi login` and again
# when its storage token expires; azure-native at once; kubelogin's first AKS token after at least
# 16 minutes of cluster creation and the two 600 s role waits; `az acr repository show` after a
# 70-minute ACR build that starts after the AcrPush role wait (components/image.py).
ROLE_WAIT = 600
DEPLOY_REQUESTS = [
    ("backend", "storage", 0),
    ("azure-native", "management", 5),
    ("kubelogin", "aks", 16 * 60 + 2 * ROLE_WAIT),
    ("az", "management", ROLE_WAIT + 70 * 60),
    ("backend", "storage", ACCESS_TOKEN_SECONDS + 5),
]
PREVIEW_REQUESTS = [("backend", "storage", 0), ("azure-native", "management", 5), ("kubelogin", "aks", 30)]
# The image job (tools/image_job.py): `az group exists` and `az acr list` at once, the tag's
# `acr repository show`, then `acr build` and, after a 70-minute build, `acr repository show` again.
IMAGE_REQUESTS = [("az", "management", 0), ("az", "management", 5), ("az", "management", 5 + 70 * 60)]


def step_seconds(step: dict[str, Any]) -> int:
    run = step.get("run", "")
    return (
        STEP_SECONDS
        + VENV_SECONDS * ("make venv" in run or "make .venv/.installed" in run)
        + GO_INSTALL_SECONDS * ("go install" in run)
        + INSTALL_CLI_SECONDS * ("az aks install-cli" in run)
    )


def runs_pulumi(step: dict[str, Any]) -> bool:
    """Whether the step starts what asks Azure for tokens: Pulumi, or the image job's tool."""
    uses = str(step.get("uses", ""))
    return (
        (uses.startswith("pulumi/actions@") and "command" in step.get("with", {}))
        or bool(re.search(r"^\s*pulumi (preview|up)\b", step.get("run", ""), flags=re.MULTILINE))
        or "-m tools.image_job" in step.get("run", "")
    )


def credential(tool: str, job: dict[str, Any], before: list[dict[str, Any]]) -> str:
    """What each tool signs in with, from the job's environment and the steps before Pulumi:
    `github` asks GitHub for a new ID token per Entra token, `file` reads a file kept fresh, and
    `az` reuses the Azure CLI's login (the one assertion azure/login gave it)."""
    env, text = job.get("env") or {}, json.dumps(before)
    fresh_file = "AZURE_FEDERATED_TOKEN_FILE=" in text and "-m tools.oidc_token" in text
    if tool == "azure-native":
        # ARM_USE_OIDC: a ClientAssertionCredential calling ACTIONS_ID_TOKEN_REQUEST_URL per token
        # (pulumi-azure-native provider/pkg/provider/auth_azidentity.go, newOidcCredential).
        return "github" if env.get("ARM_USE_OIDC") == "true" and env.get("ARM_CLIENT_ID") else "az"
    if tool == "kubelogin":
        # workloadidentity in a GitHub job: GitHub's endpoint per token (kubelogin provider.go);
        # the stack files' default is azurecli.
        return "github" if "-m tools.ci_stack" in text and env.get("AZURE_CLIENT_ID") else "az"
    if tool == "backend":
        # azidentity's WorkloadIdentityCredential reads AZURE_FEDERATED_TOKEN_FILE.
        return "file" if fresh_file and env.get("AZURE_CLIENT_ID") else "az"
    # tools/ci/bin/az logs the CLI in again from the file before each command.
    return "file" if fresh_file and "tools/ci/bin" in text else "az"


def failed_requests(job: dict[str, Any], requests: list[tuple[str, str, int]]) -> list[str]:
    clock, login, start = 0, None, None
    for index, step in enumerate(job["steps"]):
        if str(step.get("uses", "")).startswith("Azure/login@"):
            login = clock
        if runs_pulumi(step):
            start, before = clock, job["steps"][:index]
            break
        clock += step_seconds(step)
    assert login is not None and start is not None
    # azure/login's `az login` gets a management token at once; any other scope needs the assertion.
    cached = {"management": login}
    failures = []
    for tool, scope, offset in requests:
        at = start + offset
        if credential(tool, job, before) != "az":
            continue
        if scope in cached and at - cached[scope] <= ACCESS_TOKEN_SECONDS:
            continue
        if at - login > ID_TOKEN_SECONDS:
            failures.append(f"{tool} asks for a {scope} token {at - login} s after the login: AADSTS700024")
        else:
            cached[scope] = at
    return failures


@pytest.mark.parametrize(
    ("workflow", "job", "requests"),
    [
        ("deploy.yml", "up-dev", DEPLOY_REQUESTS),
        ("deploy.yml", "up-prod", DEPLOY_REQUESTS),
        ("deploy.yml", "image-dev", IMAGE_REQUESTS),
        ("deploy.yml", "image-prod", IMAGE_REQUESTS),
        ("pull-request.yml", "preview", PREVIEW_REQUESTS),
    ],
)
def test_no_azure_token_request_fails_because_the_login_has_aged(workflow: str, job: str, requests: Any):
    assert failed_requests(jobs(workflow)[job], requests) == []


def test_the_login_comes_right_before_pulumi_after_every_install():
    for workflow, name in [("deploy.yml", job) for job in jobs("deploy.yml")] + [("pull-request.yml", "preview")]:
        steps = jobs(workflow)[name]["steps"]
        login = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("Azure/login@"))
        assert all(step_seconds(s) == STEP_SECONDS for s in steps[login:]), f"{workflow}: an install after the login"


def test_ci_notes_cover_each_topic_and_the_first_deploy_timeline_counts_both_role_waits():
    notes = (ROOT / "docs" / "ci-cd-notes.md").read_text()
    headings = re.findall(r"^## (.+)$", notes, flags=re.MULTILINE)
    assert headings == [
        "Stacks",
        "Tokens",
        "Image builds",
        "PR comment",
        "Identities and runner",
        "Pinned versions",
        "Public endpoint",
        "First-deploy timeline",
    ]
    (timeline,) = re.findall(r"^## First-deploy timeline\n(.*)", notes, flags=re.MULTILINE | re.DOTALL)
    assert "role wait 1" in timeline and "role wait 2" in timeline and "600 s" in timeline


# --- a fresh subscription, a first pull request, a faster job ---------------------------------


def step_index(steps: list[dict[str, Any]], match: Any) -> int:
    (index,) = [i for i, s in enumerate(steps) if match(s)]
    return index


def test_a_read_only_preflight_of_every_stack_runs_before_any_up():
    from bootstrap import plan
    from tools import ci_workflows

    deploy = jobs("deploy.yml")
    job = deploy["preflight"]
    # As the preview identity, which reads the subscription (no deploy identity holds a role there).
    assert job["environment"] == plan.PREVIEW_ENVIRONMENT
    (login,) = logins(job)
    assert login["client-id"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"
    assert "PULUMI_CONFIG_PASSPHRASE" not in json.dumps(job) and "pulumi/actions" not in json.dumps(job)
    steps = job["steps"]
    login_at = step_index(steps, lambda s: str(s.get("uses", "")).startswith("Azure/login@"))
    check = step_index(steps, lambda s: "-m tools.preflight" in s.get("run", ""))
    assert login_at < check
    stacks = ci_workflows.stacks_of(ci_workflows.EXAMPLE)
    assert f"for stack in {' '.join(stacks)}; do" in steps[check]["run"]
    assert '--stack "$stack" --subscription-only' in steps[check]["run"]
    for name in UP_JOBS:
        assert "preflight" in deploy[name]["needs"], name


def test_the_ci_preflight_asks_only_the_subscription(monkeypatch, capsys):
    from tools import preflight

    asked: list[tuple[str, ...]] = []

    def az(*args: str) -> object:
        asked.append(args)
        if args[:2] == ("account", "show"):
            return {}
        raise preflight.AzError("AuthorizationFailed")

    def never(*_: object) -> str:
        raise AssertionError("the subscription-only preflight looks at no tool and no address")

    monkeypatch.setattr(preflight, "run_az", az)
    monkeypatch.setattr(preflight, "public_ip", never)
    monkeypatch.setattr(preflight.shutil, "which", never)
    assert preflight.main(["--stack", "prod", "--subscription-only"]) == 1
    out = capsys.readouterr().out
    assert "problem: providers: az failed (AuthorizationFailed); fix az and rerun" in out
    assert {a[0] for a in asked} >= {"account", "provider", "vm"}


def test_deploy_and_preview_jobs_build_the_programs_venv_only():
    runs = [("deploy.yml", j) for j in (*UP_JOBS, "preflight")] + [("pull-request.yml", "preview")]
    for workflow, name in runs:
        text = json.dumps(jobs(workflow)[name]["steps"])
        assert "make venv" not in text and "checkov" not in text, f"{workflow}:{name} builds checkov's venv"
        assert text.count("make .venv/.installed") == 1, name
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed:", makefile, flags=re.MULTILINE)
    assert re.search(r"^VENV := \.venv$", makefile, flags=re.MULTILINE)


def test_the_first_preview_before_any_deploy_logs_in_only_where_the_backend_has_its_meta_file():
    from bootstrap import plan

    (step,) = [s for s in jobs("pull-request.yml")["preview"]["steps"] if "pulumi preview" in s.get("run", "")]
    script = step["run"]
    check = script.index("az storage blob exists --auth-mode login")
    assert f"--name {plan.BACKEND_META_BLOB}" in script
    no_stack = script.index('if [ "$meta" != true ]; then')
    assert check < no_stack < script.index("exit 0") < script.index('pulumi login "azblob://')
    assert "No stack $STACK yet" in script[no_stack : script.index("exit 0")]


# --- deploy.yml is written from bootstrap's stacks list --------------------------------------


def test_deploy_yml_is_what_tools_ci_workflows_writes_for_bootstraps_stacks():
    from tools import ci_workflows

    stacks = ci_workflows.stacks_of(ci_workflows.EXAMPLE)
    expected = ci_workflows.render(stacks, {s: ci_workflows.needs_runner(s) for s in stacks})
    assert (WORKFLOWS / "deploy.yml").read_text() == expected, "run: python -m tools.ci_workflows"
    assert ci_workflows.main(["--check"]) == 0


def test_a_stack_added_to_the_list_gets_its_image_and_up_jobs_in_order():
    from tools import ci_workflows

    text = ci_workflows.render(["dev", "staging", "prod"], {"dev": False, "staging": False, "prod": True})
    document = yaml.safe_load(text)["jobs"]
    assert list(document) == [
        "preflight",
        *("image-dev", "up-dev", "image-staging", "up-staging", "image-prod", "up-prod"),
    ]
    assert document["up-staging"]["needs"] == ["preflight", "up-dev", "image-staging"]
    assert document["up-prod"]["needs"] == ["preflight", "up-staging", "image-prod"]
    assert "for stack in dev staging prod; do" in json.dumps(document["preflight"])
    staging, dev = document["up-staging"], document["up-dev"]
    assert staging["environment"] == staging["env"]["STACK"] == "staging"
    assert staging["concurrency"] == {"group": "deploy-staging", "cancel-in-progress": False}
    assert {**staging["env"], "STACK": "x"} == {**dev["env"], "STACK": "x"}
    assert staging["steps"] == dev["steps"] and document["image-staging"]["steps"] == document["image-dev"]["steps"]
    assert staging["runs-on"] == "ubuntu-24.04"
    assert document["up-prod"]["runs-on"] == {
        "group": "${{ vars.PROD_RUNNER_GROUP }}",
        "labels": "${{ vars.PROD_RUNNER_LABEL }}",
    }
    # A stack whose API server admits listed addresses only deploys from the runner group.
    behind = yaml.safe_load(ci_workflows.render(["dev", "prod"], {"dev": True, "prod": True}))["jobs"]
    assert behind["up-dev"]["runs-on"] == behind["up-prod"]["runs-on"]


def test_which_stacks_deploy_from_the_runner_group_comes_from_their_stack_files():
    from tools import ci_workflows

    assert ci_workflows.needs_runner("prod") is True  # authorizedIpRanges set
    assert ci_workflows.needs_runner("dev") is False  # an open API server


def test_the_workflow_writer_refuses_a_stack_without_a_stack_file(tmp_path, capsys):
    from tools import ci_workflows

    config = tmp_path / "Pulumi.ci.yaml"
    config.write_text("config:\n  llamacpp-aks-bootstrap:stacks: [dev, staging]\n")
    assert ci_workflows.main(["--config", str(config), "--check"]) == 1
    assert "stacks ['staging'] have no Pulumi.<stack>.yaml" in capsys.readouterr().err
