"""CI is least-privilege: previews are read-only, passphrases are per environment, deploys are never
cancelled, prod deploys from a runner that can reach its API server, and the role condition
in docs/ci-cd.md names exactly the roles the stack grants."""

from __future__ import annotations

import re
from typing import Any

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


def test_deploys_log_in_as_the_deploy_identity():
    (login,) = logins(jobs("deploy.yml")["up"])
    assert login["client-id"] == "${{ vars.AZURE_CLIENT_ID }}"


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
    deploy = jobs("deploy.yml")["up"]["concurrency"]
    assert preview.startswith("preview-") and deploy["group"].startswith("deploy-")


def test_nothing_cancels_a_deploy():
    assert jobs("deploy.yml")["up"]["concurrency"]["cancel-in-progress"] is False


def test_prod_deploys_on_the_runner_named_by_a_repository_variable():
    up = jobs("deploy.yml")["up"]
    prod = next(i for i in up["strategy"]["matrix"]["include"] if i["stack"] == "prod")
    assert up["runs-on"] == "${{ matrix.runner }}" and prod["runner"] == "${{ vars.PROD_RUNNER_LABEL }}"


def test_ci_doc_role_condition_names_exactly_the_roles_the_stack_grants():
    readme = (ROOT / "docs" / "ci-cd.md").read_text()
    (listed,) = re.findall(r'^\s*ROLES="([^"]+)"', readme, flags=re.MULTILINE)
    assert {r.strip() for r in listed.split(",")} == set(catalog.STACK_GRANTED_ROLES)
