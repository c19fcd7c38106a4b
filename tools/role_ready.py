"""Waits until the deployer's new role is in effect on a scope, polling ARM's permissions API
(core/permissions.py), at most --timeout seconds. The program runs it as a pulumi-command local
Command in place of a fixed sleep; it needs `az` signed in as the deployer (as `make up` and CI
already are) or ARM_ACCESS_TOKEN set.

usage: python -m tools.role_ready --scope RESOURCE_ID --operation OP [--data] --timeout SECONDS
environment: ARM_ENDPOINT (default https://management.azure.com), ARM_ACCESS_TOKEN (optional)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from core.permissions import PERMISSIONS_API_VERSION, Needed, NotInEffect, allows, poll

ARM_ENDPOINT = "https://management.azure.com"


def arm_token() -> str:
    """ARM_ACCESS_TOKEN, or a fresh one from `az` (asked on each probe: a token issued before the
    role took effect does not carry it for services that read roles from the token)."""
    token = os.environ.get("ARM_ACCESS_TOKEN", "")
    if token:
        return token
    out = subprocess.run(
        ["az", "account", "get-access-token", "--resource", ARM_ENDPOINT + "/", "--query", "accessToken", "-o", "tsv"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def permissions(endpoint: str, scope: str, token: str) -> list[dict[str, Any]]:
    """Every page of the caller's permissions on `scope`."""
    url: str | None = (
        f"{endpoint}{urllib.parse.quote(scope)}/providers/Microsoft.Authorization/permissions"
        f"?api-version={PERMISSIONS_API_VERSION}"
    )
    found: list[dict[str, Any]] = []
    while url:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        found.extend(page.get("value") or [])
        url = page.get("nextLink")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scope", required=True, help="the resource id the role was granted on")
    parser.add_argument("--operation", required=True, help="an operation the role allows")
    parser.add_argument("--data", action="store_true", help="the operation is a data action")
    parser.add_argument("--timeout", type=float, required=True, help="seconds to wait at most")
    parser.add_argument(
        "--settle", type=float, default=0, help="seconds to wait once ARM grants it, for the service to follow"
    )
    args = parser.parse_args(argv)
    if not args.scope.startswith("/subscriptions/"):
        print(
            f"--scope={args.scope!r} is not an Azure resource id; pass one that starts with /subscriptions/",
            file=sys.stderr,
        )
        return 2
    if not os.environ.get("ARM_ACCESS_TOKEN") and shutil.which("az") is None:
        print(
            "az is not installed here and ARM_ACCESS_TOKEN is not set: the deployer's new roles cannot be "
            "checked; install the Azure CLI and run az login (make up needs it anyway).",
            file=sys.stderr,
        )
        return 2
    endpoint = os.environ.get("ARM_ENDPOINT", ARM_ENDPOINT).rstrip("/")
    needed = Needed(args.operation, args.data)

    def probe() -> bool:
        try:
            return allows(permissions(endpoint, args.scope, arm_token()), needed)
        except subprocess.CalledProcessError as err:
            # az's own words (not signed in, another tenant, an expired login) say what to fix.
            said = " ".join((err.stderr or "").split())[:300]
            print(f"probe: az account get-access-token failed: {said or err}", file=sys.stderr)
            return False
        except (urllib.error.URLError, json.JSONDecodeError) as err:
            print(f"probe: {err}", file=sys.stderr)
            return False

    try:
        took = poll(probe, args.timeout, now=time.monotonic, sleep=time.sleep)
    except NotInEffect as err:
        print(
            f"{args.operation} on {args.scope} is {err}; check the deployer's role assignment, or raise "
            "cluster.rolePropagationSeconds (Azure documents up to 10 minutes).",
            file=sys.stderr,
        )
        return 1
    print(f"{args.operation} in effect after {took:.0f} s")
    if args.settle > 0:
        print(f"waiting {args.settle:.0f} s more for the service behind the scope to read it")
        time.sleep(args.settle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
