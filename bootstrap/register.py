"""Registers, on the subscription `az` is logged in to, the resource providers and features every
stack in bootstrap's `stacks` uses, and waits until each is Registered. `make bootstrap` runs it
before the bootstrap program, because no deploy identity may register anything (a registration is
a subscription-wide action: Microsoft.Resources/subscriptions/providers/register/action, and
Microsoft.Features/providers/features/register/action).

What each stack needs has one home, tools/preflight.py (`required_providers`, `required_features`),
which the deploy job also runs read-only before Pulumi. Order, from
learn.microsoft.com/azure/virtual-machines/disks-enable-host-based-encryption-cli: register the
feature, wait until it is Registered, then register its provider again so the change propagates.

    python -m bootstrap.register --config bootstrap/Pulumi.ci.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from core.loading import ConfigError, load_stack
from tools.preflight import AzError, required_features, required_providers, run_az

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "llamacpp-aks-bootstrap"
DEFAULT_STACKS = ("dev", "prod")
# Providers register in a few minutes; EncryptionAtHost can take longer (the docs above say to poll).
TIMEOUT_SECONDS = 30 * 60
POLL_SECONDS = 15

Az = Callable[..., Any]


class RegistrationError(Exception):
    """A registration that failed or did not finish; the message says which and what to do."""


def bootstrap_stacks(config_file: Path) -> list[str]:
    """The `stacks` of bootstrap's stack file (its default when unset)."""
    if not config_file.exists():
        raise RegistrationError(
            f"{config_file} does not exist; copy bootstrap/Pulumi.example.yaml to it and set owner, "
            'repository and stacks first (docs/ci-cd.md, "From nothing to the first deploy").'
        )
    config = (yaml.safe_load(config_file.read_text()) or {}).get("config") or {}
    stacks = config.get(f"{PROJECT}:stacks", list(DEFAULT_STACKS))
    if not isinstance(stacks, list) or not all(isinstance(s, str) for s in stacks):
        raise RegistrationError(f"{PROJECT}:stacks in {config_file} must be a list of stack names, like [dev, prod].")
    return stacks


def needed(stacks: list[str], root: Path = ROOT) -> tuple[list[str], list[tuple[str, str]]]:
    """The providers and features the union of these stacks' configs needs, each once, in order."""
    providers: dict[str, None] = {}
    features: dict[tuple[str, str], None] = {}
    for stack in stacks:
        path = root / f"Pulumi.{stack}.yaml"
        if not path.exists():
            raise RegistrationError(
                f"stack {stack!r} is in bootstrap's stacks but {path.name} does not exist; add the stack file "
                "or remove the stack from stacks."
            )
        try:
            config = load_stack(path)
        except ConfigError as err:
            raise RegistrationError(f"{path.name}: " + "; ".join(err.problems)) from err
        providers |= dict.fromkeys(required_providers(config))
        features |= dict.fromkeys(required_features(config))
    return list(providers), list(features)


def wait_for(what: str, state: Callable[[], str | None], sleep: Callable[[float], None], timeout: float) -> None:
    waited = 0.0
    while (current := state()) != "Registered":
        if waited >= timeout:
            raise RegistrationError(
                f"{what} is still {current or 'not registered'} after {timeout:.0f} s; run `make bootstrap` "
                "again later (registration continues in Azure meanwhile)."
            )
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def register(
    providers: list[str],
    features: list[tuple[str, str]],
    az: Az = run_az,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = TIMEOUT_SECONDS,
    say: Callable[[str], None] = print,
) -> None:
    """Features first (each then re-registers its provider), then every provider; each waited for."""
    for namespace, name in features:
        say(f"registering feature {namespace}/{name}")
        az("feature", "register", "--namespace", namespace, "--name", name)
        wait_for(
            f"feature {namespace}/{name}",
            lambda n=namespace, f=name: (
                (az("feature", "show", "--namespace", n, "--name", f) or {}).get("properties") or {}
            ).get("state"),
            sleep,
            timeout,
        )
    again = {namespace for namespace, _ in features}
    for namespace in [*providers, *sorted(again - set(providers))]:
        state = (az("provider", "show", "--namespace", namespace) or {}).get("registrationState")
        if state == "Registered" and namespace not in again:
            continue
        say(f"registering resource provider {namespace}")
        az("provider", "register", "--namespace", namespace)
        wait_for(
            f"resource provider {namespace}",
            lambda n=namespace: (az("provider", "show", "--namespace", n) or {}).get("registrationState"),
            sleep,
            timeout,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="bootstrap's stack file")
    args = parser.parse_args(argv)
    try:
        providers, features = needed(bootstrap_stacks(args.config))
        register(providers, features)
    except RegistrationError as err:
        print(f"bootstrap: {err}", file=sys.stderr)
        return 1
    except AzError as err:
        print(
            f"bootstrap: az failed ({err}); run `az login` and `az account set --subscription <id>` first.",
            file=sys.stderr,
        )
        return 1
    print(f"bootstrap: {len(providers)} resource providers and {len(features)} features registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
