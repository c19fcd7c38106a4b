"""The AKS user kubeconfig is rewritten for a login mode that needs no person at the keyboard."""

from __future__ import annotations

import pytest
import yaml

from core.kubeconfig import with_login_mode
from tools.render import sample_kubeconfig


def exec_args(kubeconfig: str) -> list[str]:
    return yaml.safe_load(kubeconfig)["users"][0]["user"]["exec"]["args"]


def test_azurecli_mode_replaces_device_code_and_drops_interactive_flags():
    args = exec_args(with_login_mode(sample_kubeconfig({"resourceName": "aks"}), "azurecli"))
    assert args[-2:] == ["--login", "azurecli"]
    assert "devicecode" not in args and "--client-id" not in args and "--environment" not in args
    assert args[args.index("--server-id") + 1] == "6dae42f8-4368-4678-94ff-3960e28e3630"
    assert "--tenant-id" in args


def test_workloadidentity_mode_reads_tenant_and_client_from_the_environment():
    args = exec_args(with_login_mode(sample_kubeconfig({"resourceName": "aks"}), "workloadidentity"))
    assert args[-2:] == ["--login", "workloadidentity"]
    assert "--tenant-id" not in args and "--client-id" not in args


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        with_login_mode(sample_kubeconfig({}), "browser")


def test_users_without_kubelogin_are_left_alone():
    config = yaml.safe_dump({"users": [{"name": "admin", "user": {"token": "abc"}}]})
    assert yaml.safe_load(with_login_mode(config, "azurecli")) == yaml.safe_load(config)
