"""Writes .github/workflows/deploy.yml from bootstrap's `stacks` list: per stack an image job and
an up job, in the list's order (each up after the previous stack's), the first stack's jobs
holding the steps (YAML anchors) the others reuse. A stack whose `cluster.authorizedIpRanges` is
set (and that is not a private cluster) deploys from prod's runner group, asked for by group and
label; every other job runs on a GitHub-hosted runner.

    python -m tools.ci_workflows [--config bootstrap/Pulumi.ci.yaml] [--check]

tests/test_workflows.py checks the committed file is what this writes for the stacks of
bootstrap/Pulumi.example.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from core.loading import load_stack

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
EXAMPLE = ROOT / "bootstrap" / "Pulumi.example.yaml"
PROJECT = "llamacpp-aks-bootstrap"
HOSTED = "    runs-on: ubuntu-24.04\n"

HEADER = r"""# Written by tools/ci_workflows.py from bootstrap's `stacks` list: change that, then run
# `python -m tools.ci_workflows --config bootstrap/Pulumi.<BOOTSTRAP_STACK>.yaml`; not this file.
# Every push to main: `pulumi up` for dev, then for prod once a required reviewer approves the
# `prod` environment (Settings > Environments > prod > Required reviewers). Each environment holds
# its own stack's passphrase; only main may deploy to either (deployment branch rule).
# Images (docs/ci-cd-notes.md, "Image builds"): each stack's image job builds image/ into that
# stack's registry before its up, which then finds the content tag and only reads its digest.
# Prod's image job starts at once, beside dev's jobs, so prod's up is never held by a build; GitHub
# asks prod's reviewers for each job in the prod environment, so they approve the build (first)
# and the deploy (after dev). The jobs of both stacks are the same steps (YAML anchors, which
# GitHub reads since 2025-09; tests/test_workflows.py holds their env blocks equal but for STACK).
# Tokens (docs/ci-cd-notes.md, "Tokens"): the Azure CLI's login cannot renew its 5-minute GitHub ID
# token (github.com/Azure/azure-cli/issues/28708), so every tool that asks for Azure tokens during the hour-long run
# gets a fresh ID token of its own: azure-native (ARM_USE_OIDC) and kubelogin (workloadidentity)
# ask GitHub's endpoint themselves; the state backend and `az` read a file tools/oidc_token.py
# rewrites every 2 minutes (retrying a failed refresh after 10 s). The login itself happens right before Pulumi runs.
name: deploy

on:
  push:
    branches: [main]

permissions: {}

jobs:
"""
# Why a stack that deploys from its runner group still builds its image on a hosted runner.
HOSTED_IMAGE = r"""    # A GitHub-hosted runner: this job only calls Azure's management API and the registry (ACR
    # Tasks builds in Azure), never {stack}'s API server, so it needs no address in
    # cluster.authorizedIpRanges. It is as guarded as on {stack}'s runner: it runs only on main, only
    # after {stack}'s reviewers approve, and holds only {stack}'s OIDC token, on a fresh VM GitHub
    # discards after the job. (A registry with publicNetworkAccess off would need {stack}'s runner.)
"""
# One job of each kind per stack; the first stack's jobs hold the steps (anchors) the others reuse.
IMAGE_JOB = r"""  image-{stack}:
{hosted_note}    runs-on: ubuntu-24.04
    environment: {stack}
    concurrency:
      group: image-{stack}
      cancel-in-progress: false
    permissions:
      contents: read
      id-token: write # OpenID Connect login to Azure
    env:
      STACK: {stack}
      AZURE_CLIENT_ID: ${{{{ vars.AZURE_CLIENT_ID }}}}
      AZURE_TENANT_ID: ${{{{ vars.AZURE_TENANT_ID }}}}
      ARM_SUBSCRIPTION_ID: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
    steps: {steps}"""
IMAGE_STEPS = r"""      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.11"
      - name: Install the image job's packages, hashed wheels only, from requirements.lock.txt (before the login)
        run: |
          python -m venv "$RUNNER_TEMP/image-venv"
          python tools/lock_subset.py requirements.lock.txt \
            pydantic pydantic-core annotated-types typing-extensions typing-inspection pyyaml \
            > "$RUNNER_TEMP/image-job.txt"
          "$RUNNER_TEMP/image-venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes --no-deps --only-binary :all: -r "$RUNNER_TEMP/image-job.txt"
          echo "$GITHUB_WORKSPACE/tools/ci/bin" >> "$GITHUB_PATH"
      - name: Keep a fresh federated token for az
        run: |
          echo "AZURE_FEDERATED_TOKEN_FILE=$RUNNER_TEMP/azure-federated-token" >> "$GITHUB_ENV"
          python -m tools.oidc_token --file "$RUNNER_TEMP/azure-federated-token" --every 0
          nohup python -m tools.oidc_token --file "$RUNNER_TEMP/azure-federated-token" > "$RUNNER_TEMP/oidc_token.log" 2>&1 &
      - uses: Azure/login@f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca # v3.0.1
        with:
          client-id: ${{{{ vars.AZURE_CLIENT_ID }}}}
          tenant-id: ${{{{ vars.AZURE_TENANT_ID }}}}
          subscription-id: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
      - name: Build the image unless its content tag is in the stack's registry
        run: '"$RUNNER_TEMP/image-venv/bin/python" -m tools.image_job --config "Pulumi.$STACK.yaml"'

"""

UP_JOB = r"""  up-{stack}:
    needs: {needs}
{runs_on}    environment: {stack}
    concurrency:
      # Deploys of one stack queue, and nothing cancels one: a cancelled `up` leaves a locked
      # stack and half-made resources. Previews use their own groups.
      group: deploy-{stack}
      cancel-in-progress: false
    permissions:
      contents: read
      id-token: write # OpenID Connect login to Azure: no client secret is stored
    env:
      STACK: {stack}
      PULUMI_CONFIG_PASSPHRASE: ${{{{ secrets.PULUMI_CONFIG_PASSPHRASE }}}}
      # A stack CI created has its passphrase salt in the state only (the stack file is not
      # committed back): later runs read it there (github.com/pulumi/pulumi/issues/17236).
      PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER: "true"
      AZURE_STORAGE_ACCOUNT: ${{{{ vars.PULUMI_STATE_ACCOUNT }}}}
      AZURE_STORAGE_AUTH_MODE: login
      # The providers' and kubelogin's own OIDC sign-in (see the header).
      ARM_USE_OIDC: "true"
      ARM_CLIENT_ID: ${{{{ vars.AZURE_CLIENT_ID }}}}
      ARM_TENANT_ID: ${{{{ vars.AZURE_TENANT_ID }}}}
      ARM_SUBSCRIPTION_ID: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
      AZURE_CLIENT_ID: ${{{{ vars.AZURE_CLIENT_ID }}}}
      AZURE_TENANT_ID: ${{{{ vars.AZURE_TENANT_ID }}}}
      # Pinned tools (docs/ci-cd-notes.md, "Pinned versions"); Pulumi's CLI matches the SDK pin.
      PULUMI_VERSION: "3.272.0"
      KUBELOGIN_VERSION: v0.2.19
    steps: {steps}"""
UP_STEPS = r"""      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.11"
      - name: Install kubelogin and the program's venv only (no credentials yet)
        env:
          # go install checks every module and toolchain it downloads against Go's checksum
          # database (GOSUMDB, on by default; nothing here turns it off). GOTOOLCHAIN=auto fetches
          # the Go version kubelogin's go.mod names, checked the same way.
          GOTOOLCHAIN: auto
        run: |
          mkdir -p "$HOME/.local/bin"
          GOBIN="$HOME/.local/bin" go install "github.com/Azure/kubelogin@$KUBELOGIN_VERSION"
          echo "$HOME/.local/bin" >> "$GITHUB_PATH"
          echo "$GITHUB_WORKSPACE/tools/ci/bin" >> "$GITHUB_PATH"
          make .venv/.installed
      - name: CI's stack settings (kubelogin's workload identity, the deployer, its node group)
        env:
          DEPLOYER_OBJECT_ID: ${{{{ vars.DEPLOYER_OBJECT_ID }}}}
          NODE_RESOURCE_GROUP_GRANTED: ${{{{ vars.NODE_RESOURCE_GROUP_GRANTED }}}}
          STACK_ROLES_PREPARED: ${{{{ vars.STACK_ROLES_PREPARED }}}}
        run: >-
          .venv/bin/python -m tools.ci_stack --stack "$STACK" --deployer-object-id "$DEPLOYER_OBJECT_ID"
          --node-resource-group-granted "$NODE_RESOURCE_GROUP_GRANTED" --stack-roles-prepared "$STACK_ROLES_PREPARED"
      - name: Keep a fresh federated token for the state backend and az
        run: |
          echo "AZURE_FEDERATED_TOKEN_FILE=$RUNNER_TEMP/azure-federated-token" >> "$GITHUB_ENV"
          .venv/bin/python -m tools.oidc_token --file "$RUNNER_TEMP/azure-federated-token" --every 0
          nohup .venv/bin/python -m tools.oidc_token --file "$RUNNER_TEMP/azure-federated-token" > "$RUNNER_TEMP/oidc_token.log" 2>&1 &
      - uses: Azure/login@f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca # v3.0.1
        with:
          client-id: ${{{{ vars.AZURE_CLIENT_ID }}}}
          tenant-id: ${{{{ vars.AZURE_TENANT_ID }}}}
          subscription-id: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
      - uses: pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0
        with:
          command: up
          stack-name: ${{{{ env.STACK }}}}
          # v7.0.0 selects an existing stack unless upsert is on (src/main.ts): the first deploy creates it.
          upsert: true
          pulumi-version: ${{{{ env.PULUMI_VERSION }}}}
          cloud-url: azblob://${{{{ vars.PULUMI_STATE_CONTAINER }}}}
          diff: true

"""
GROUP = r"""    # {Stack}'s API server admits only cluster.authorizedIpRanges, which no GitHub-hosted runner
    # address is in: {stack}'s up runs on {stack}'s runner (bootstrap's prodRunner), asked for by group
    # and label, so no runner in another group can take it even if it carries the label.
    runs-on:
      group: ${{{{ vars.PROD_RUNNER_GROUP }}}}
      labels: ${{{{ vars.PROD_RUNNER_LABEL }}}}
"""


def needs_runner(stack: str, root: Path = ROOT) -> bool:
    """Whether the stack's API server admits only listed addresses (no hosted runner's)."""
    cluster = load_stack(root / f"Pulumi.{stack}.yaml").cluster
    return bool(cluster.authorized_ip_ranges) and not cluster.private_cluster


PREFLIGHT = r"""  preflight:
    # Read-only, before any job of any stack: providers and features registered, GPU quota, sizes
    # in the configured zones, the Kubernetes version, per stack (tools/preflight.py). It runs as
    # the preview identity, which reads the subscription, where those live: no deploy identity
    # holds a role there. It fails the run here, with one sentence per problem, not an hour in.
    runs-on: ubuntu-24.04
    environment: dev-preview
    permissions:
      contents: read
      id-token: write # OpenID Connect login to Azure
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.11"
      - name: Install the program's venv only (no credentials yet)
        run: make .venv/.installed
      - uses: Azure/login@f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca # v3.0.1
        with:
          client-id: ${{{{ vars.AZURE_PREVIEW_CLIENT_ID }}}}
          tenant-id: ${{{{ vars.AZURE_TENANT_ID }}}}
          subscription-id: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
      - name: Preflight of every stack (read-only)
        run: |
          for stack in {stacks}; do
            .venv/bin/python -m tools.preflight --stack "$stack" --subscription-only
          done

"""


def render(stacks: list[str], runner: dict[str, bool]) -> str:
    """deploy.yml for these stacks, in order; `runner`: stack -> deploys from prod's runner group."""
    out = [HEADER, PREFLIGHT.format(stacks=" ".join(stacks))]
    for index, stack in enumerate(stacks):
        runs_on = GROUP.format(stack=stack, Stack=stack.capitalize()) if runner[stack] else HOSTED
        first = index == 0
        needs = f"[preflight, image-{stack}]" if first else f"[preflight, up-{stacks[index - 1]}, image-{stack}]"
        image_steps = "&image-steps\n" + IMAGE_STEPS.format() if first else "*image-steps\n\n"
        up_steps = "&up-steps\n" + UP_STEPS.format() if first else "*up-steps\n"
        hosted_note = HOSTED_IMAGE.format(stack=stack) if runner[stack] else ""
        out.append(IMAGE_JOB.format(stack=stack, steps=image_steps, hosted_note=hosted_note))
        out.append(UP_JOB.format(stack=stack, needs=needs, runs_on=runs_on, steps=up_steps))
    return "".join(out)


def stacks_of(config: Path) -> list[str]:
    document = yaml.safe_load(config.read_text()) or {}
    return list((document.get("config") or {}).get(f"{PROJECT}:stacks", ["dev", "prod"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="bootstrap's stack file")
    parser.add_argument("--check", action="store_true", help="exit 1 if deploy.yml differs")
    args = parser.parse_args(argv)
    stacks = stacks_of(args.config)
    missing = [s for s in stacks if not (ROOT / f"Pulumi.{s}.yaml").exists()]
    if missing:
        print(f"ci_workflows: stacks {missing} have no Pulumi.<stack>.yaml; add them first.", file=sys.stderr)
        return 1
    text = render(stacks, {s: needs_runner(s) for s in stacks})
    if args.check:
        if WORKFLOW.read_text() != text:
            print("ci_workflows: deploy.yml is out of date; run: python -m tools.ci_workflows", file=sys.stderr)
            return 1
        return 0
    WORKFLOW.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
