"""Keeps a federated-token file fresh for a GitHub Actions job: the Entra ID workload-identity
mode of each tool reads it instead of the Azure CLI's login, which cannot renew itself.

Why: azure/login hands `az` one GitHub ID token, which lives 5 minutes, and the Azure CLI cannot ask
for another (github.com/Azure/azure-cli/issues/28708, open; the lifetime is measured in github.com/Azure/login/issues/372 and
github.com/Azure/azure-cli/issues/28737). Every later request for a token of a new resource, or after the cached one
expires (60-90 minutes), then fails with AADSTS700024. The tools that read this file:
- Pulumi's azblob state backend, through azidentity's WorkloadIdentityCredential
  (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID). That credential re-reads the file
  only when its copy is 10 minutes old (azure-sdk-for-go sdk/azidentity/workload_identity.go,
  `getAssertion`), which is fine for the one storage scope it renews every 60-90 minutes.
- `tools/ci/bin/az`, which logs the Azure CLI in again from this file before each command.
(The azure-native provider and kubelogin need no file: with ARM_USE_OIDC, and in kubelogin's
workloadidentity mode, they ask GitHub's endpoint themselves for each new token; see
docs/ci-cd-notes.md, "Tokens".)

GitHub's endpoint: GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=<aud> with
`Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers {"value": "<jwt>"} (a job with
`id-token: write` gets both variables).

    python -m tools.oidc_token --file PATH [--every SECONDS]   # --every 0: write once and exit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

# The audience Entra ID's federated credentials expect (bootstrap/plan.py ENTRA_TOKEN_AUDIENCE).
AUDIENCE = "api://AzureADTokenExchange"
# GitHub's ID tokens live 5 minutes. A new one every 2 minutes leaves each reader at least 3, and
# room for several retries before the file's token ages out; a failed refresh is retried after
# RETRY_SECONDS, not after a full period.
TOKEN_LIFE_SECONDS = 300
REFRESH_SECONDS = 120
RETRY_SECONDS = 10
REQUEST_TIMEOUT_SECONDS = 30


def request_url(base: str, audience: str = AUDIENCE) -> str:
    """The request URL with `audience` set (the base already carries a query string)."""
    parts = urllib.parse.urlsplit(base)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "audience"] + [("audience", audience)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def fetch(url: str, bearer: str, audience: str = AUDIENCE) -> str:
    """A fresh ID token from GitHub's endpoint, or ValueError naming what was wrong."""
    request = urllib.request.Request(request_url(url, audience), headers={"Authorization": f"bearer {bearer}"})
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        value = json.load(response).get("value")
    if not isinstance(value, str) or value.count(".") != 2:
        raise ValueError("GitHub's ID token endpoint answered without a JWT in 'value'")
    return value


def write_atomically(path: Path, token: str) -> None:
    """Readers see the old token or the new one, never half a file; only this user may read it."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.replace(temporary, path)


def refresh(
    path: Path,
    url: str,
    bearer: str,
    every: float,
    rounds: int | None = None,
    *,
    retry: float = RETRY_SECONDS,
    fetcher: Callable[[str, str], str] = fetch,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Writes a token now, then every `every` seconds (`rounds` bounds the attempts, for tests).

    A failed refresh is reported and retried after `retry` seconds (at most `every`): the file's
    token is still valid then, and a passing outage costs seconds, not a period. The first write
    must succeed; a tool that finally reads a stale token fails with Entra's own message."""
    done = 0
    while True:
        try:
            write_atomically(path, fetcher(url, bearer))
            wait = every
        except (OSError, ValueError) as error:
            if done == 0:
                raise
            wait = min(retry, every)
            print(f"oidc_token: refresh failed, retrying in {wait:.0f} s: {error}", file=sys.stderr)
        done += 1
        if every <= 0 or (rounds is not None and done >= rounds):
            return
        sleep(wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--every", type=float, default=REFRESH_SECONDS, help="seconds between refreshes; 0: once")
    args = parser.parse_args(argv)
    url, bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"), os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not bearer:
        print(
            "oidc_token: ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are unset; the job needs `id-token: write`.",
            file=sys.stderr,
        )
        return 2
    refresh(args.file, url, bearer, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
