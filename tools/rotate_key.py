"""Replaces a stack's API key (make rotate-key).

usage: python -m tools.rotate_key --stack dev [--dry-run]

Where the stack's config sets no `apiKey`, the key is a `random.RandomPassword` kept in the state:
a new one takes `pulumi up --replace <its URN>`. The URN is read from the program itself, run under
the render's mocks with the stack's config (the type chain of its parents and its name), so a renamed
component or resource cannot leave this command replacing nothing. Where the config sets `apiKey`
(a secret), the new key is a new config value instead; this command says so and changes nothing.

What happens while it rolls (components/serving.py): the Secret gets the new key and the pod
template's `llamacpp-aks/api-key-sha256` annotation changes with it, so the Deployment replaces its
pods. With one replica (`Recreate`) the server is down from the old pod's stop until the new pod
has loaded the model; with several (`maxSurge 0`) pods are replaced one at a time and, until the
last is, some answer the old key and some the new. Clients holding the old key get 401 from every
new pod: give them the new key (make outputs) as the roll ends. The metrics scraper and the
in-cluster load test read the key from the Secret, so they follow by themselves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from core import loading
from core.config import PROJECT
from core.loading import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SERVER_TYPE = f"{PROJECT}:serving:ModelServer"

ROLL = (
    "while it rolls: the Secret gets the new key and the pods are replaced (one replica: down until the new pod "
    "has loaded the model; several: one at a time, old and new keys both answered until the last is replaced); "
    "clients holding the old key get 401 from new pods, so hand them the new one (make outputs STACK={stack}) "
    "as the roll ends; the metrics scraper reads the Secret and follows by itself"
)


def configured_key(path: Path) -> bool:
    """Whether the stack file sets apiKey (then the key is config, not a generated password)."""
    doc = loading.parse_stack_file(path.read_bytes())
    return f"{PROJECT}:apiKey" in (doc.get("config") or {})


def generated_key_urns(stack: str, flat: dict[str, str]) -> list[str]:
    """The URNs of the generated API keys the program declares for this config (under mocks)."""
    import pulumi

    from tools import render

    render.run_program(stack, flat)
    monitor = pulumi.runtime.settings.get_monitor()
    urns = list(getattr(monitor, "resources", {}))
    # Pulumi's mock monitor qualifies a child's type with its parent's type only (the engine, with the
    # whole chain): the same URN here, where the key's parent is ModelServer, a child of the stack.
    return [u for u in urns if u.split("::")[2] == f"{SERVER_TYPE}${RANDOM_PASSWORD}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--dry-run", action="store_true", help="print the pulumi command instead of running it")
    args = parser.parse_args(argv)
    try:
        path = loading.stack_file(ROOT, args.stack)
    except loading.StackFileMissing as err:
        print(err, file=sys.stderr)
        return 1
    try:
        stack, flat = loading.stack_config(path)
        if configured_key(path):
            print(
                f"Pulumi.{stack}.yaml sets apiKey, so the key is config: set a new one with "
                f"pulumi config set --secret apiKey <new key> --stack {stack}, then make up STACK={stack}; "
                + ROLL.format(stack=stack)
            )
            return 0
        urns = generated_key_urns(stack, flat)
    except ConfigError as err:
        for problem in err.problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 1
    if len(urns) != 1:
        print(
            f"problem: the program declares {len(urns)} generated API keys under {SERVER_TYPE}, not 1; "
            "tools/rotate_key.py must learn where the key is",
            file=sys.stderr,
        )
        return 1
    command = ["pulumi", "up", "--stack", stack, "--replace", urns[0], "--diff"]
    print(f"a new API key for {stack}: {' '.join(command)}")
    print(ROLL.format(stack=stack))
    if args.dry_run:
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
