"""Makes an AKS user kubeconfig usable without a person at the keyboard.

With local accounts disabled, AKS hands out a kubeconfig whose user runs `kubelogin get-token`
in device-code mode, which would block `pulumi up`. kubelogin's own `convert-kubeconfig -l MODE`
rewrites the login mode; this does the same rewrite in-process (no kubelogin needed at preview).
Modes: github.com/Azure/kubelogin docs/book/src/concepts/login-modes.
"""

from __future__ import annotations

import base64

import yaml

LOGIN_MODES = ("azurecli", "workloadidentity", "msi", "spn")
# Flags that only the interactive modes read; kubelogin's convert drops them for these modes.
_DROPPED = {
    "azurecli": ("--client-id", "--environment"),
    "workloadidentity": ("--client-id", "--tenant-id", "--environment"),
    "msi": ("--tenant-id", "--environment"),
    "spn": (),
}


def decode(kubeconfig_b64: str) -> str:
    return base64.b64decode(kubeconfig_b64).decode()


def with_login_mode(kubeconfig: str, mode: str) -> str:
    if mode not in LOGIN_MODES:
        raise ValueError(f"login mode {mode!r} is not one of {', '.join(LOGIN_MODES)}")
    doc = yaml.safe_load(kubeconfig)
    for user in doc.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_ or "kubelogin" not in exec_.get("command", ""):
            continue
        args, out, skip = list(exec_.get("args") or []), [], False
        for i, arg in enumerate(args):
            if skip:
                skip = False
                continue
            if arg in ("--login", "-l") or arg in _DROPPED[mode]:
                skip = i + 1 < len(args) and not args[i + 1].startswith("-")
                continue
            out.append(arg)
        exec_["args"] = [*out, "--login", mode]
    return yaml.safe_dump(doc, sort_keys=False)
