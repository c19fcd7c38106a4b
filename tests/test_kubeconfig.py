"""The AKS user kubeconfig is rewritten for a login mode exactly as `kubelogin convert-kubeconfig`
does (github.com/Azure/kubelogin pkg/internal/converter/convert.go)."""

from __future__ import annotations

import pytest
import yaml

from core.kubeconfig import LOGIN_MODES, ExplicitFlags, with_login_mode
from tools.mocks import TENANT, sample_kubeconfig

SERVER = "6dae42f8-4368-4678-94ff-3960e28e3630"  # AKS's Entra server app (the --server-id AKS writes)
AKS_CLIENT = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"  # the Azure CLI's AKS client app AKS writes as --client-id
HEAD = ["get-token", "--login"]


def exec_args(mode: str, flags: ExplicitFlags | None = None, kubeconfig: str | None = None) -> list[str]:
    converted = with_login_mode(kubeconfig or sample_kubeconfig({"resourceName": "aks"}), mode, flags)
    return yaml.safe_load(converted)["users"][0]["user"]["exec"]["args"]


def test_azurecli_mode_keeps_the_clusters_tenant_as_an_explicit_tenant_and_nothing_interactive():
    assert exec_args("azurecli") == [*HEAD, "azurecli", "--server-id", SERVER, "--tenant-id", TENANT]


def test_azurecli_mode_takes_an_explicit_tenant_over_the_clusters():
    args = exec_args("azurecli", ExplicitFlags(tenant_id="other-tenant"))
    assert args[-2:] == ["--tenant-id", "other-tenant"]


def test_azd_mode_drops_the_tenant_unless_one_is_given():
    assert exec_args("azd") == [*HEAD, "azd", "--server-id", SERVER]


def test_msi_mode_drops_the_aks_client_app_id_so_the_node_identity_is_used():
    assert exec_args("msi") == [*HEAD, "msi", "--server-id", SERVER]


def test_msi_mode_keeps_an_explicit_user_assigned_identity():
    args = exec_args("msi", ExplicitFlags(client_id="uami-client"))
    assert args == [*HEAD, "msi", "--server-id", SERVER, "--client-id", "uami-client"]


def test_msi_mode_keeps_an_explicit_identity_resource_id():
    args = exec_args("msi", ExplicitFlags(identity_resource_id="/subscriptions/s/uami"))
    assert args[-2:] == ["--identity-resource-id", "/subscriptions/s/uami"]


def test_workloadidentity_mode_reads_tenant_and_client_from_the_environment():
    assert exec_args("workloadidentity") == [*HEAD, "workloadidentity", "--server-id", SERVER]


def test_workloadidentity_mode_keeps_explicit_client_then_tenant():
    args = exec_args("workloadidentity", ExplicitFlags(client_id="c", tenant_id="t"))
    assert args[-4:] == ["--client-id", "c", "--tenant-id", "t"]


@pytest.mark.parametrize("mode", ["devicecode", "interactive", "spn", "ropc"])
def test_modes_that_sign_in_an_app_carry_client_tenant_and_environment_over(mode):
    assert exec_args(mode) == [
        *HEAD,
        mode,
        "--server-id",
        SERVER,
        "--client-id",
        AKS_CLIENT,
        "--tenant-id",
        TENANT,
        "--environment",
        "AzurePublicCloud",
    ]


def test_spn_mode_takes_an_explicit_client_id_over_the_aks_client_app():
    args = exec_args("spn", ExplicitFlags(client_id="sp-app"))
    assert args[args.index("--client-id") + 1] == "sp-app"


def test_token_cache_dir_travels_as_cache_dir():
    config = yaml.safe_load(sample_kubeconfig({"resourceName": "aks"}))
    config["users"][0]["user"]["exec"]["args"] += ["--token-cache-dir", "/cache"]
    args = exec_args("azurecli", kubeconfig=yaml.safe_dump(config))
    assert args[4:7] == [SERVER, "--cache-dir", "/cache"]


def test_legacy_flag_is_kept_by_the_modes_that_read_it_only():
    config = yaml.safe_load(sample_kubeconfig({"resourceName": "aks"}))
    config["users"][0]["user"]["exec"]["args"].append("--legacy")
    text = yaml.safe_dump(config)
    assert {m for m in LOGIN_MODES if "--legacy" in exec_args(m, kubeconfig=text)} == {"devicecode", "spn", "ropc"}


def test_a_kubelogin_user_without_a_server_id_is_refused_with_the_fix():
    config = yaml.safe_load(sample_kubeconfig({"resourceName": "aks"}))
    config["users"][0]["user"]["exec"]["args"] = ["get-token"]
    with pytest.raises(ValueError, match="no --server-id; get it again with az aks get-credentials"):
        with_login_mode(yaml.safe_dump(config), "azurecli")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        with_login_mode(sample_kubeconfig({}), "browser")


def test_users_without_kubelogin_are_left_alone():
    config = yaml.safe_dump({"users": [{"name": "admin", "user": {"token": "abc"}}]})
    assert yaml.safe_load(with_login_mode(config, "azurecli")) == yaml.safe_load(config)
