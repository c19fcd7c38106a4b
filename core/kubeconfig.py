"""Makes an AKS user kubeconfig usable without a person at the keyboard.

With local accounts disabled, AKS hands out a kubeconfig whose user runs `kubelogin get-token`
in device-code mode, which would block `pulumi up`. This does in-process (no kubelogin needed at
preview) exactly what `kubelogin convert-kubeconfig -l MODE [--tenant-id T] [--client-id C]
[--identity-resource-id R]` does to an exec user: it rebuilds the arguments as
`get-token --login MODE --server-id S [--cache-dir D]` followed by what that mode reads.
Source: github.com/Azure/kubelogin pkg/internal/converter/convert.go (`Convert`, one `case` per
login mode); modes: docs/book/src/concepts/login-modes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import yaml

# kubelogin's login modes (pkg/internal/token/options.go).
LOGIN_MODES = ("devicecode", "interactive", "spn", "ropc", "msi", "azurecli", "azd", "workloadidentity")
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
# Modes that carry the input kubeconfig's client, tenant and environment (and --legacy) over;
# the others read their identity from the environment or from explicit flags only.
_CARRIES_IDENTITY = ("devicecode", "interactive", "spn", "ropc")
_CARRIES_LEGACY = ("devicecode", "spn", "ropc")


@dataclass(frozen=True, kw_only=True)
class ExplicitFlags:
    """The flags given to `convert-kubeconfig` itself, which win over the input kubeconfig's."""

    tenant_id: str | None = None  # --tenant-id
    client_id: str | None = None  # --client-id
    identity_resource_id: str | None = None  # --identity-resource-id (msi)


def decode(kubeconfig_b64: str) -> str:
    return base64.b64decode(kubeconfig_b64).decode()


def _arg(args: list[str], name: str) -> str | None:
    """The value after a flag, as kubelogin's getExecArg reads it."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def converted_args(args: list[str], mode: str, flags: ExplicitFlags) -> list[str]:
    """`kubelogin get-token` arguments after `convert-kubeconfig -l mode` with these flags."""
    server_id = _arg(args, "--server-id")
    if not server_id:
        raise ValueError("the kubeconfig's kubelogin user has no --server-id; get it again with az aks get-credentials")
    client_id = flags.client_id or _arg(args, "--client-id")
    tenant_id = flags.tenant_id or _arg(args, "--tenant-id")
    out = ["get-token", "--login", mode, "--server-id", server_id]
    cache_dir = _arg(args, "--cache-dir") or _arg(args, "--token-cache-dir")
    if cache_dir:
        out += ["--cache-dir", cache_dir]
    if mode in _CARRIES_IDENTITY:
        if not client_id or not tenant_id:
            raise ValueError(f"login mode {mode} needs --client-id and --tenant-id; the kubeconfig has neither")
        out += ["--client-id", client_id, "--tenant-id", tenant_id]
        environment = _arg(args, "--environment")
        if environment:
            out += ["--environment", environment]
        if mode in _CARRIES_LEGACY and "--legacy" in args:
            out.append("--legacy")
    elif mode in ("azurecli", "azd", "workloadidentity"):
        # kubelogin disregards the input's tenant here (an Azure CLI logged in with a managed
        # identity rejects one); only an explicit --tenant-id is kept.
        if mode == "workloadidentity" and flags.client_id:
            out += ["--client-id", flags.client_id]
        if flags.tenant_id:
            out += ["--tenant-id", flags.tenant_id]
    elif mode == "msi":
        # Never the AKS server app's client id from the input: IMDS would look for a
        # user-assigned identity of that id. Only an explicit identity is kept.
        if flags.client_id:
            out += ["--client-id", flags.client_id]
        elif flags.identity_resource_id:
            out += ["--identity-resource-id", flags.identity_resource_id]
    return out


def with_login_mode(kubeconfig: str, mode: str, flags: ExplicitFlags | None = None) -> str:
    """The kubeconfig with every kubelogin user converted to `mode`; other users untouched.

    For `azurecli`, the cluster's own tenant is passed as the explicit `--tenant-id` unless one is
    given, so the token comes from the cluster's tenant when `az` is logged in to several
    (as `kubelogin convert-kubeconfig -l azurecli --tenant-id <cluster tenant>` would).
    """
    if mode not in LOGIN_MODES:
        raise ValueError(f"login mode {mode!r} is not one of {', '.join(LOGIN_MODES)}; set a kubelogin login mode")
    flags = flags or ExplicitFlags()
    doc: dict[str, Any] = yaml.safe_load(kubeconfig)
    for user in doc.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_ or "kubelogin" not in str(exec_.get("command", "")).lower():
            continue
        args = [str(a) for a in exec_.get("args") or []]
        mode_flags = flags
        if mode == "azurecli" and not flags.tenant_id and _arg(args, "--tenant-id"):
            mode_flags = ExplicitFlags(
                tenant_id=_arg(args, "--tenant-id"),
                client_id=flags.client_id,
                identity_resource_id=flags.identity_resource_id,
            )
        exec_.update(command="kubelogin", apiVersion=EXEC_API_VERSION, args=converted_args(args, mode, mode_flags))
    return yaml.safe_dump(doc, sort_keys=False)
