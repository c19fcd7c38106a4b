"""Bad stack config fails the way `pulumi preview` does: before any resource, every problem at
once, each message naming the key path, the value, the limit and the fix."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import rules
from core.config import ActiveHours, StackConfig
from core.loading import ConfigError, load_config
from core.summary import summary_markdown
from tests.conftest import only, preview_problems, run_stack
from tools import render


def test_defaults_reproduce_the_reference_deployment():
    s = StackConfig().server
    assert (s.context_size, s.parallel, s.batch_size, s.gpu_layers, s.threads, s.port) == (32768, 8, 2048, 99, 24, 8008)
    assert s.flash_attention == "on"
    assert (s.resources.requests.cpu, s.resources.requests.memory) == ("8", "32Gi")
    assert (s.resources.limits.cpu, s.resources.limits.memory) == ("32", "128Gi")
    assert StackConfig().model.storage.size_gi == 60


def test_reference_config_is_valid_and_warns_that_one_replica_recreates():
    config, warnings = load_config({}, "dev")
    assert config == StackConfig()
    assert any("Recreate" in w for w in warnings)


@pytest.mark.parametrize(("value", "expected"), [(True, "on"), (False, "off"), ("auto", "auto"), ("on", "on")])
def test_flash_attention_accepts_yaml_1_1_booleans(value, expected):
    config, _ = load_config({"server": {"flashAttention": value}}, "dev")
    assert config.server.flash_attention == expected


def test_rejects_parallel_that_leaves_no_room_for_an_image():
    msg = only(preview_problems({"server": {"parallel": 10}}))
    assert msg.startswith("server.parallel=10 with server.contextSize=32768 gives 3328 tokens per slot")
    assert "may need 4074 (1 image x 2050 + prompt 1000 + output 1024)" in msg
    assert "set server.parallel <= 8" in msg
    assert "raise server.contextSize to 40960" in msg


def test_accepts_a_slot_that_holds_exactly_the_worst_case_request():
    """32768 / 8 = 4096 tokens per slot; 1 image x 2050 + prompt 1000 + output 1046 = 4096."""
    budget = {"images": 1, "imageMaxTokens": 2048, "promptTokens": 1000, "outputTokens": 1046}
    config, _ = load_config({"server": {"requestBudget": budget}}, "dev")
    assert config.server.request_budget.output_tokens == 1046


def test_rejects_a_slot_one_token_short_of_the_worst_case_request():
    budget = {"images": 1, "imageMaxTokens": 2048, "promptTokens": 1000, "outputTokens": 1047}
    with pytest.raises(ConfigError) as err:
        load_config({"server": {"requestBudget": budget}}, "dev")
    assert any("gives 4096 tokens per slot, but one request may need 4097" in p for p in err.value.problems)


def test_rejects_unified_context_smaller_than_one_request():
    msg = only(preview_problems({"server": {"kvUnified": True, "contextSize": 2048, "parallel": 2}}))
    assert "server.contextSize=2048 (unified KV) gives 2048 tokens" in msg
    assert "; set server.contextSize >= 4074" in msg


def test_rejects_parallel_below_one():
    msg = only(preview_problems({"server": {"parallel": 0}}))
    assert msg == "server.parallel=0 is below the minimum 1; set server.parallel to at least 1."


def test_rejects_slot_context_above_the_model_maximum():
    msg = only(preview_problems({"server": {"contextSize": 65536, "parallel": 1}}))
    assert "gives 65536 tokens per slot, above the model's training context model.architecture.maxContext=32768" in msg
    assert "Set server.contextSize <= 32768 or raise server.parallel to 2" in msg


def test_rejects_vram_over_the_gpu_and_names_the_smallest_size_that_fits():
    msg = only(preview_problems({"cluster": {"gpuPool": {"vmSize": "Standard_NV12ads_A10_v5"}}}))
    assert msg.startswith(
        "the VRAM estimate 8.52 GB for cluster.gpuPool.vmSize=Standard_NV12ads_A10_v5 is over its 8 GB less 10% headroom (7.20 GB)"
    )
    assert "use cluster.gpuPool.vmSize=Standard_NV18ads_A10_v5 (the smallest size that fits)" in msg


def test_rejects_vram_that_no_a10_size_holds():
    raw = {"server": {"contextSize": 393216, "parallel": 12}}
    msg = only(preview_problems(raw))
    assert "no A10 size holds it" in msg


def test_rejects_vram_headroom_eaten_by_a_large_context():
    msg = only(preview_problems({"server": {"vramHeadroom": 0.7}}))
    assert "less 70% headroom (7.20 GB)" in msg


def test_rejects_unknown_keys_with_a_spelling_hint():
    msg = only(preview_problems({"server": {"paralel": 4}}))
    assert msg.startswith(
        "server.paralel is not a known key: remove it or fix its spelling; did you mean server.parallel?"
    )


def test_rejects_unknown_top_level_key():
    msg = only(preview_problems({"sever": {}}))
    assert "sever is not a known key" in msg and "did you mean server?" in msg


def test_rejects_min_count_above_max_count():
    msg = only(preview_problems({"cluster": {"gpuPool": {"minCount": 3, "maxCount": 2}}}))
    assert msg == "cluster.gpuPool.minCount=3 is above cluster.gpuPool.maxCount=2; set minCount <= 2 or maxCount >= 3."


def test_rejects_replicas_the_gpu_pool_cannot_hold():
    raw = {
        "server": {"replicas": 3},
        "model": {"storage": {"accessMode": "ReadWriteMany"}},
        "cluster": {"gpuPool": {"maxCount": 2}},
    }
    msg = only(preview_problems(raw))
    assert msg.startswith(
        "server.replicas=3 needs 3 GPUs, but cluster.gpuPool.maxCount=2 nodes of Standard_NV36ads_A10_v5 (1 GPU each) hold 2"
    )
    assert "set cluster.gpuPool.maxCount >= 3 or server.replicas <= 2" in msg


def test_rejects_requests_above_node_allocatable():
    raw = {
        "server": {
            "resources": {"requests": {"cpu": "40", "memory": "500Gi"}, "limits": {"cpu": "40", "memory": "500Gi"}}
        }
    }
    problems = preview_problems(raw)
    assert len(problems) == 2
    assert problems[0].startswith(
        "server.resources.requests.cpu=40 is more than a Standard_NV36ads_A10_v5 node can allocate (32400m of 36 vCPU)"
    )
    assert problems[1].startswith(
        "server.resources.requests.memory=500Gi is more than a Standard_NV36ads_A10_v5 node can allocate (396Gi of 440Gi)"
    )


def test_rejects_limits_below_requests():
    raw = {
        "server": {"resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "4", "memory": "32Gi"}}}
    }
    msg = only(preview_problems(raw))
    assert (
        msg
        == "server.resources.limits.cpu=4 is below server.resources.requests.cpu=8; Kubernetes rejects such a pod. Set limits.cpu >= 8."
    )


def test_rejects_malformed_quantity():
    msg = only(preview_problems({"server": {"resources": {"requests": {"cpu": "eight", "memory": "32Gi"}}}}))
    assert msg.startswith("server.resources.requests.cpu='eight' is invalid")
    assert "not a Kubernetes quantity such as 8, 500m or 32Gi" in msg


def test_rejects_volume_too_small_for_model_and_projector():
    msg = only(preview_problems({"model": {"storage": {"sizeGi": 6}}}))
    assert msg.startswith("model.storage.sizeGi=6 cannot hold the model and projector (6.04 GB)")
    assert "set model.storage.sizeGi >= 7." in msg


def test_rejects_several_replicas_on_a_read_write_once_volume():
    msg = only(preview_problems({"server": {"replicas": 2}, "cluster": {"gpuPool": {"maxCount": 2}}}))
    assert msg.startswith("server.replicas=2 with model.storage.accessMode=ReadWriteOnce")
    assert "Multi-Attach" in msg and "model.storage.accessMode=ReadWriteMany" in msg


def test_rejects_ubatch_larger_than_batch():
    msg = only(preview_problems({"server": {"batchSize": 256, "ubatchSize": 512}}))
    assert msg == (
        "server.ubatchSize=512 is larger than server.batchSize=256 (a micro-batch is a slice of a batch); "
        "set server.ubatchSize <= 256 or server.batchSize >= 512."
    )


def test_rejects_unknown_gpu_vm_size():
    msg = only(preview_problems({"cluster": {"gpuPool": {"vmSize": "Standard_NC24ads_A100_v4"}}}))
    assert msg.startswith("cluster.gpuPool.vmSize=Standard_NC24ads_A100_v4 is not an A10 GPU size")
    assert "Standard_NV36ads_A10_v5" in msg


def test_rejects_unsupported_kubernetes_version():
    msg = only(preview_problems({"cluster": {"kubernetesVersion": "1.29"}}))
    assert msg.startswith(
        "cluster.kubernetesVersion=1.29 is not a Kubernetes version AKS supports; use one of 1.35, 1.36, 1.37"
    )


def test_accepts_a_patch_version_of_a_supported_minor():
    config, _ = load_config({"cluster": {"kubernetesVersion": "1.36.2"}}, "dev")
    assert config.cluster.kubernetes_version == "1.36.2"


def test_rejects_authorized_range_that_is_not_a_cidr():
    msg = only(preview_problems({"cluster": {"authorizedIpRanges": ["10.0.0.300/24"]}}))
    assert msg.startswith("cluster.authorizedIpRanges[0]='10.0.0.300/24' is invalid")


def test_rejects_cuda_newer_than_the_a10_driver_supports():
    newer, unpinned = preview_problems({"image": {"cudaVersion": "13.0.1"}})
    assert "image.cudaVersion=13.0.1 is newer than CUDA 12.8" in newer
    assert "Set image.cudaVersion to 12.8.1 or older." in newer
    assert unpinned.startswith("image.cudaVersion=13.0.1 has no pinned base image digests")


# What production needs besides the rule a test is about: a break-glass admin group (Microsoft's
# documentation example id) and an alert receiver (tests/test_first_up.py).
GROUP = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
PRODUCTION = {"production": True, "entraAdminGroupObjectIds": [GROUP]}
ALERTED = {"alerts": {"emails": ["oncall@llm-team.org"]}}


def test_production_must_pin_model_digests():
    raw = {
        **ALERTED,
        "model": {"sha256": "", "mmprojSha256": ""},
        "cluster": {**PRODUCTION, "authorizedIpRanges": ["198.18.0.0/24"]},
    }
    problems = preview_problems(raw, stack="prod")
    assert problems == [
        "model.sha256 is empty with cluster.production=true (stack prod); production must pin the digest of model.file. Set model.sha256 to the sha256 shown on the file's page.",
        "model.mmprojSha256 is empty with cluster.production=true (stack prod); production must pin the digest of model.mmprojFile. Set model.mmprojSha256 to the sha256 shown on the file's page.",
    ]


def test_dev_with_empty_digests_warns_instead():
    _, warnings = load_config({"model": {"sha256": ""}}, "dev")
    assert any(w.startswith("model.sha256 is empty: the first download is trusted") for w in warnings)


def test_production_must_not_expose_the_api_server_to_everyone():
    msg = only(preview_problems({**ALERTED, "cluster": PRODUCTION}, stack="prod"))
    assert msg.startswith(
        "cluster.authorizedIpRanges is empty and cluster.privateCluster is false with cluster.production=true (stack prod)"
    )


def test_production_rules_follow_the_config_switch_whatever_the_stack_is_called():
    msg = only(preview_problems({**ALERTED, "cluster": PRODUCTION}, stack="production"))
    assert msg.startswith("cluster.authorizedIpRanges is empty")


def test_a_stack_named_prod_without_the_switch_gets_no_production_rules():
    config, _ = load_config({"model": {"sha256": ""}}, "prod")
    assert config.cluster.production is False


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_production_refuses_an_authorized_range_open_to_every_address(everyone):
    raw = {**ALERTED, "cluster": {**PRODUCTION, "authorizedIpRanges": ["198.18.0.0/24", everyone]}}
    msg = only(preview_problems(raw, stack="prod"))
    assert msg.startswith(f"cluster.authorizedIpRanges=['198.18.0.0/24', '{everyone}'] together admit ")
    assert "with cluster.production=true (stack prod), more than one organisation holds" in msg
    assert "list only your own networks" in msg


def test_internal_load_balancer_without_caller_ranges_is_refused():
    msg = only(preview_problems({"service": {"type": "InternalLoadBalancer"}}))
    assert msg.startswith("service.type=InternalLoadBalancer with service.allowedCidrs=[]")
    assert "every caller through the load balancer would be dropped" in msg
    assert "list the ranges callers arrive from in service.allowedCidrs" in msg


def test_internal_load_balancer_with_caller_ranges_is_accepted():
    config, _ = load_config({"service": {"type": "InternalLoadBalancer", "allowedCidrs": ["10.100.0.0/16"]}}, "dev")
    assert config.service.allowed_cidrs == ["10.100.0.0/16"]


def test_spot_pool_with_nodes_kept_warns_about_eviction():
    _, warnings = load_config({"cluster": {"gpuPool": {"spot": True, "minCount": 1}}}, "dev")
    assert any("spot=true with minCount=1" in w for w in warnings)


def test_reports_every_problem_at_once():
    raw = {
        "server": {"parallel": 0, "batchSize": 256, "ubatchSize": 512, "paralel": 1},
        "cluster": {"gpuPool": {"minCount": -1}},
    }
    problems = preview_problems(raw)
    assert len(problems) == 3  # schema errors first; cross-field rules run once the schema holds
    assert {p.split("=")[0].split(" ")[0] for p in problems} == {
        "server.parallel",
        "server.paralel",
        "cluster.gpuPool.minCount",
    }


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    msg = only(preview_problems({"service": {"zzz": 1}}))
    assert msg == (
        "service.zzz is not a known key: remove it or fix its spelling; "
        "known keys under service: allowedCidrs, allowedNamespaces, port, type."
    )


# --- hostile values: each stops at preview with the key, the value and a fix ------------------

HOSTILE = [
    ({"model": {"file": "../../etc/passwd"}}, "model.file='../../etc/passwd'", "is not a .gguf file name"),
    ({"model": {"file": "$(id).gguf; rm -rf /"}}, "model.file='$(id).gguf; rm -rf /'", "is not a .gguf file name"),
    ({"model": {"mmprojFile": "mmproj\u202efgg.gguf"}}, "model.mmprojFile='mmproj\\u202efgg.gguf'", "is not a .gguf"),
    ({"model": {"mmprojFile": "dir/mmproj.gguf"}}, "model.mmprojFile='dir/mmproj.gguf'", "is not a .gguf file name"),
    ({"model": {"file": "model\n.gguf"}}, "model.file='model\\n.gguf'", "is not a .gguf file name"),
    (
        {"model": {"repo": "http://evil.example/x"}},
        "model.repo='http://evil.example/x'",
        "is not a Hugging Face repo id",
    ),
    ({"model": {"repo": "../../x"}}, "model.repo='../../x'", "is not a Hugging Face repo id"),
    ({"model": {"repo": "owner/a..b"}}, "model.repo='owner/a..b'", "is not a Hugging Face repo id"),
    ({"model": {"repo": "no-owner"}}, "model.repo='no-owner'", "is not a Hugging Face repo id"),
    ({"image": {"repository": "../../x y"}}, "image.repository='../../x y'", "is not a registry repository path"),
    (
        {"model": {"storage": {"storageClass": "Evil Class!"}}},
        "model.storage.storageClass='Evil Class!'",
        "is not a Kubernetes object name",
    ),
    (
        {"cluster": {"entraAdminGroupObjectIds": ["admins"]}},
        "cluster.entraAdminGroupObjectIds[0]='admins'",
        "is not an Entra object id (a GUID)",
    ),
    ({"cluster": {"location": "mars; rm"}}, "cluster.location='mars; rm'", "is not an Azure region name"),
    (
        {"autoscaling": {"activeHours": {"timezone": "Mars/Olympus"}}},
        "autoscaling.activeHours.timezone='Mars/Olympus'",
        "is not an IANA time zone",
    ),
    (
        {"autoscaling": {"activeHours": {"timezone": "../../etc/passwd"}}},
        "autoscaling.activeHours.timezone='../../etc/passwd'",
        "is not an IANA time zone",
    ),
]


@pytest.mark.parametrize(("raw", "key_and_value", "what"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_rejects_hostile_values_naming_key_value_and_fix(raw, key_and_value, what):
    msg = only(preview_problems(raw))
    assert msg.startswith(f"{key_and_value} {what}")
    assert "; use a value such as " in msg
    assert "\u202e" not in msg, "the message must not carry the invisible character itself"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"autoscaling": {"deferredPerReplica": float("inf")}}, "autoscaling.deferredPerReplica"),
        ({"autoscaling": {"busySlotRatio": float("nan")}}, "autoscaling.busySlotRatio"),
        ({"cluster": {"gpuPool": {"spotMaxPrice": float("-inf")}}}, "cluster.gpuPool.spotMaxPrice"),
        ({"server": {"vramHeadroom": float("nan")}}, "server.vramHeadroom"),
    ],
)
def test_rejects_infinite_and_nan_numbers(raw, key):
    msg = only(preview_problems(raw))
    assert msg.startswith(f"{key}=")
    assert f"is not a finite number (YAML's .inf and .nan are refused); set {key} to a number." in msg


def test_accepts_real_names_of_every_checked_kind():
    raw = {
        "model": {
            "repo": "ggml-org/Qwen2.5-VL-7B-Instruct-GGUF",
            # Another repo: its own commit, files' digests, sizes and shape (placeholders of the right form).
            "revision": "2" * 40,
            **{key: "1" * 64 for key in ("sha256", "mmprojSha256")},
            **{key: 4_000_000_000 for key in ("sizeBytes", "mmprojSizeBytes")},
            "architecture": {},
            "storage": {"storageClass": "azurefile-csi-premium"},
        },
        "image": {"repository": "team/llama-server"},
        "cluster": {"location": "westeurope", "entraAdminGroupObjectIds": ["3f2504e0-4f89-11d3-9a0c-0305e82c3301"]},
        "autoscaling": {"activeHours": {"timezone": "Europe/Berlin"}},
    }
    config, _ = load_config(raw, "dev")
    assert config.autoscaling.active_hours is not None
    assert config.autoscaling.active_hours.timezone == "Europe/Berlin"


# --- secrets in plain text ------------------------------------------------------------------


def test_program_refuses_a_secret_that_pulumi_did_not_decrypt(monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")  # the CLI's list: nothing was encrypted
    msg = only(preview_problems({}, secrets={"apiKey": "sk-plain-text"}))
    assert msg.startswith("llamacpp-aks:apiKey is in plain text in the stack file (value not shown)")
    assert "pulumi config set --secret apiKey <value>" in msg
    assert "sk-plain-text" not in msg


def test_program_accepts_a_secret_that_pulumi_decrypted(monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", '["llamacpp-aks:apiKey"]')
    mocks = run_stack({}, secrets={"apiKey": "sk-decrypted"})
    assert mocks.resources


# --- the offline render: a broken stack file is one sentence and exit 1 ---------------------

BROKEN_FILES = {
    "yaml-syntax": ("config:\n  llamacpp-aks:server: {parallel: [\n", "is not valid YAML at line 3, column 1"),
    "config-not-a-mapping": ('config: "x"\n', "config='x' is not a mapping"),
    "top-level-list": ("- 1\n- 2\n", "holds a list at the top level"),
    "plaintext-hf-token": ("config:\n  llamacpp-aks:hfToken: hf_plain\n", "llamacpp-aks:hfToken is in plain text"),
    "infinite-threshold": (
        "config:\n  llamacpp-aks:autoscaling: {deferredPerReplica: .inf}\n",
        "line 2 holds .inf, which the Pulumi CLI cannot pass to the program",
    ),
}


@pytest.mark.parametrize(("text", "says"), BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_render_reports_a_broken_stack_file_in_one_sentence(tmp_path, capsys, text, says):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text(text)
    assert render.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    problems = err.splitlines()[1:]
    assert len(problems) == 1, err
    assert says in problems[0]
    assert "Traceback" not in err and "hf_plain" not in err


def test_render_reports_a_missing_stack_file_in_one_sentence(tmp_path, capsys):
    path = tmp_path / "Pulumi.absent.yaml"
    assert render.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[1] == f"- {path} does not exist; pass --config with a stack file such as Pulumi.dev.yaml."


# The form of a value Pulumi's passphrase provider encrypts: v1:<12-byte nonce>:<ciphertext and tag>.
CIPHERTEXT = "v1:AAECAwQFBgcICQoL:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="


def test_render_accepts_an_encrypted_secret(tmp_path):
    path = tmp_path / "Pulumi.enc.yaml"
    path.write_text(f"config:\n  llamacpp-aks:apiKey:\n    secure: {CIPHERTEXT}\n")
    stack, flat = render.stack_config(path)
    assert (stack, flat) == ("enc", {})


def test_rejects_a_cuda_version_without_pinned_base_image_digests():
    msg = only(preview_problems({"image": {"cudaVersion": "12.6.3"}}))
    assert msg.startswith("image.cudaVersion=12.6.3 has no pinned base image digests")
    assert "CUDA_BASE_DIGESTS in core/catalog.py" in msg


@pytest.mark.parametrize("key", ["devicePluginImage", "dcgmExporterImage"])
def test_rejects_node_agent_images_not_pinned_by_digest(key):
    msg = only(preview_problems({"cluster": {key: "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"}}))
    assert msg.startswith(f"cluster.{key}='nvcr.io/nvidia/k8s-device-plugin:v0.20.0' is not an image pinned by digest")


def test_a_read_write_once_volume_on_a_pool_of_several_gpu_nodes_warns_about_the_download_job():
    _, warnings = load_config({"cluster": {"gpuPool": {"maxCount": 2}}}, "dev")
    assert any("ReadWriteOnce with cluster.gpuPool.maxCount=2" in w and "Multi-Attach" in w for w in warnings)
    _, single = load_config({}, "dev")
    assert not any("Multi-Attach" in w for w in single)


REASON = "dev runs one replica on purpose"


def test_an_accepted_warning_is_not_printed_and_the_summary_lists_it_with_its_reason():
    config, warnings = load_config({"accepted": {"recreateDowntime": REASON}}, "dev")
    assert not any("Recreate" in w for w in warnings)
    summary = summary_markdown(config, "dev")
    assert "## Accepted on purpose" in summary
    assert "| `recreateDowntime` | server.replicas=1: updates use the Recreate strategy" in summary
    assert summary.rstrip().endswith(f"| {REASON} |")


def test_accepting_one_warning_leaves_the_others_printed():
    _, warnings = load_config({"accepted": {"recreateDowntime": REASON}}, "dev")
    assert any(w.startswith("alerts.emails and alerts.webhooks are empty") for w in warnings)


def test_rejects_accepting_a_warning_that_does_not_apply():
    msg = only(preview_problems({"accepted": {"spotEvictions": "spot nodes are cheap enough for dev"}}))
    assert msg == (
        "accepted.spotEvictions is set, but its warning does not apply to this stack; remove accepted.spotEvictions."
    )


def test_rejects_an_accepted_key_that_names_no_warning():
    msg = only(preview_problems({"accepted": {"recreateDowntim": REASON}}))
    assert "accepted.recreateDowntim is not a known key" in msg and "did you mean accepted.recreateDowntime?" in msg


def test_an_acceptance_needs_a_reason():
    assert preview_problems({"accepted": {"recreateDowntime": ""}})


def test_warnings_that_only_a_fix_removes_cannot_be_accepted():
    """A ReadWriteOnce volume on several nodes and GPU nodes kept while scaled to zero are mistakes, not choices."""
    mistakes = StackConfig.model_validate(
        {
            "cluster": {"gpuPool": {"minCount": 1, "maxCount": 2}},
            "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 2, "activeHours": {}},
        }
    )
    keys = [key for key, text in rules.all_warnings(mistakes) if "Multi-Attach" in text or "stay (and cost)" in text]
    assert keys == [None, None]


# --- fixes a message suggests are fixes -----------------------------------------------------

# "set server.parallel <= 8", "raise server.contextSize to 65536", "server.requestBudget.promptTokens
# to 766", "server.cacheTypeK and server.cacheTypeV to q8_0", "cluster.gpuPool.vmSize=Standard_...".
SUGGESTION = re.compile(
    r"((?:server|cluster)\.[A-Za-z.]+)(?: and (server\.[A-Za-z.]+))?(?: to | <= | >= |=)([A-Za-z0-9_]+)"
)


def suggestions(msg: str) -> list[dict[str, object]]:
    """Each alternative a message offers, as the raw config values it sets."""
    out = []
    for alternative in re.split(r"; or | or (?=server\.)", msg.split("; ", 1)[1]):
        updates: dict[str, object] = {}
        for match in SUGGESTION.finditer(alternative):
            value: object = int(match.group(3)) if match.group(3).isdigit() else match.group(3)
            for key in filter(None, match.group(1, 2)):
                updates[key] = value
        if updates:
            out.append(updates)
    return out


def applied(raw: dict[str, Any], updates: dict[str, object]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in updates.items():
        *path, leaf = key.split(".")
        section = out
        for part in path:
            section = section.setdefault(part, {})
        section[leaf] = value
    return out


def assert_every_suggestion_passes(raw: dict[str, Any], msg: str, expected: int) -> None:
    offered = suggestions(msg)
    assert len(offered) == expected, offered
    for updates in offered:
        load_config(applied(raw, updates), "dev")  # raises ConfigError if the fix is no fix


def test_parallel_16_suggests_no_request_budget_value_below_its_minimum():
    raw = {"server": {"parallel": 16}}
    msg = only(preview_problems(raw))
    assert "imageMaxTokens to" not in msg and "lower server.requestBudget" not in msg
    assert msg.endswith(
        "No single request-budget value can give back the 2026 missing tokens (server.requestBudget.imageMaxTokens "
        "is at least 64, promptTokens and outputTokens at least 1)."
    )
    assert_every_suggestion_passes(raw, msg, expected=2)  # parallel <= 8, contextSize 65536


def test_a_slot_a_little_short_offers_every_request_budget_value_that_fits():
    raw = {"server": {"parallel": 9}}
    msg = only(preview_problems(raw))
    assert (
        "or lower server.requestBudget.imageMaxTokens to 1814 or server.requestBudget.promptTokens to 766 or "
        "server.requestBudget.outputTokens to 790." in msg
    )
    assert_every_suggestion_passes(raw, msg, expected=5)


@pytest.mark.parametrize(("prompt", "offered"), [(2750, True), (2751, False)])
def test_image_max_tokens_is_offered_down_to_its_minimum_and_not_one_below(prompt, offered):
    """9 slots of 32768 give 3840 tokens: 3840 - 2 markers - output 1024 - prompt 2750 leaves exactly 64."""
    raw = {"server": {"parallel": 9, "requestBudget": {"promptTokens": prompt}}}
    msg = only(preview_problems(raw))
    assert ("server.requestBudget.imageMaxTokens to 64" in msg) is offered
    assert "imageMaxTokens to 63" not in msg


@pytest.mark.parametrize(
    ("parallel", "budget", "offered"),
    [
        (8, {"images": 4, "imageMaxTokens": 1024}, "images to 2"),
        (8, {"images": 2}, "images to 1"),
        (9, {"images": 2}, None),  # 9 slots of 3840 tokens: one image of 2050 no longer fits either
    ],
)
def test_fewer_images_are_offered_only_while_one_is_left(parallel, budget, offered):
    raw = {"server": {"parallel": parallel, "requestBudget": budget}}
    msg = only(preview_problems(raw))
    if offered:
        assert f"server.requestBudget.{offered}" in msg
    else:
        assert "server.requestBudget.images to" not in msg
    assert_every_suggestion_passes(raw, msg, expected=len(suggestions(msg)))


def test_the_vram_overrun_offers_what_shrinks_vram_and_never_fewer_slots_alone():
    raw = {"cluster": {"gpuPool": {"vmSize": "Standard_NV12ads_A10_v5"}}}
    msg = only(preview_problems(raw))
    assert "or lower server.contextSize, server.parallel" not in msg
    assert "fewer server.parallel slots alone do not shrink it" in msg
    assert "lower server.contextSize to 8192 with server.parallel <= 2" in msg
    assert "set server.cacheTypeK and server.cacheTypeV to q4_0" in msg
    assert_every_suggestion_passes(raw, msg, expected=3)


def test_lowering_parallel_leaves_the_vram_estimate_unchanged():
    """Why the message says so: the KV cache is sized by the total context, not the slot count."""
    eight, two = (rules.vram(StackConfig.model_validate({"server": {"parallel": p}})).kv_bytes for p in (8, 2))
    assert eight == two


def test_a_vram_overrun_no_size_holds_offers_server_settings_that_each_fit():
    raw = {"server": {"contextSize": 393216, "parallel": 12}}
    msg = only(preview_problems(raw))
    assert "no A10 size holds it" in msg
    assert_every_suggestion_passes(raw, msg, expected=len(suggestions(msg)))
    assert suggestions(msg), "at least the context or the cache type fits"


def test_the_empty_digest_warning_names_the_acceptance_that_silences_it():
    _, warnings = load_config({"model": {"sha256": ""}}, "dev")
    (warning,) = [w for w in warnings if w.startswith("model.sha256 is empty")]
    assert "accepted.unpinnedModel" in warning
    _, quiet = load_config({"model": {"sha256": ""}, "accepted": {"unpinnedModel": REASON}}, "dev")
    assert not any(w.startswith("model.sha256 is empty") for w in quiet)


# --- active hours -----------------------------------------------------------------------------

SCALE_TO_ZERO = {"enabled": True, "minReplicas": 0, "maxReplicas": 1}
ZERO_NODES = {"cluster": {"gpuPool": {"minCount": 0}}, "accepted": {"scaleToZero": "dev idles at night on purpose"}}


def window(**hours: str) -> dict[str, Any]:
    return {**ZERO_NODES, "server": {"replicas": 1}, "autoscaling": {**SCALE_TO_ZERO, "activeHours": hours}}


def test_a_window_that_starts_when_it_ends_is_refused():
    msg = only(preview_problems(window(start="08:00", end="08:00")))
    assert msg.startswith(
        "autoscaling.activeHours.start=08:00 equals autoscaling.activeHours.end=08:00: KEDA's cron scaler refuses"
    )


@pytest.mark.parametrize(("start", "end"), [("08:00", "08:01"), ("08:01", "08:00"), ("00:00", "23:59")])
def test_a_window_one_minute_long_or_one_minute_short_of_a_day_passes(start, end):
    load_config(window(start=start, end=end, days="*"), "dev")


@pytest.mark.parametrize(
    ("days", "fixed"), [("5-1", "5-6,0-1"), ("6-0", "6,0"), ("1-5,6-2", "6,0-2"), ("2-1", "2-6,0-1")]
)
def test_days_that_run_backwards_are_refused_with_the_days_in_order(days, fixed):
    msg = only(preview_problems(window(days=days)))
    assert msg.startswith(f"autoscaling.activeHours.days={days!r} has the range ")
    assert "which runs backwards: the cron parser KEDA uses refuses it" in msg
    assert msg.endswith(f"write the days in order, such as {fixed}.")
    load_config(window(days=fixed), "dev")


@pytest.mark.parametrize("days", ["1-1", "0-6", "6", "0", "1-5", "0,6", "*"])
def test_days_in_order_pass(days):
    load_config(window(days=days), "dev")


@pytest.mark.parametrize("days", ["7", "1-7", "0,7"])
def test_day_seven_is_refused_as_the_cron_parser_keda_uses_refuses_it(days):
    msg = only(preview_problems(window(days=days)))
    assert msg.startswith(f"autoscaling.activeHours.days={days!r} is not a cron day-of-week field")


@pytest.mark.parametrize(
    ("start", "end", "days", "hours"),
    [
        ("08:00", "20:00", "1-5", 60),
        ("22:00", "06:00", "*", 56),
        ("22:00", "06:00", "1-5", 88),  # Friday 22:00 runs to Monday 06:00
        # Monday 22:00 to Wednesday 06:00 (32 h), Wednesday 22:00 to Monday 06:00 (104 h)
        ("22:00", "06:00", "1,3", 136),
        ("20:00", "08:00", "5", 156),  # one night a week: Friday 20:00 to the next Friday 08:00
        ("00:00", "23:59", "0", 23 + 59 / 60),
    ],
)
def test_weekly_hours_are_those_keda_holds_the_window_open(start, end, days, hours):
    h = ActiveHours(start=start, end=end, days=days)
    assert h.weekly_hours() == pytest.approx(hours)


@given(
    st.integers(0, 23 * 60 + 58),
    st.integers(1, 24 * 60 - 1),
    st.sets(st.integers(0, 6), min_size=1),
)
def test_a_window_within_one_day_is_on_its_length_times_its_days(start, length, days):
    end = min(start + length, 24 * 60 - 1)
    h = ActiveHours(
        start=f"{start // 60:02d}:{start % 60:02d}",
        end=f"{end // 60:02d}:{end % 60:02d}",
        days=",".join(map(str, sorted(days))),
    )
    assert h.weekly_hours() == pytest.approx((end - start) / 60 * len(days))


def test_a_window_across_midnight_that_keda_holds_over_the_weekend_is_explained():
    _, warnings = load_config(window(start="22:00", end="06:00", days="1-5"), "dev")
    (warning,) = [w for w in warnings if "crosses midnight" in w]
    assert warning.startswith("autoscaling.activeHours 22:00-06:00 on days 1-5 crosses midnight: KEDA's cron scaler")
    assert "88 hours a week, not 40" in warning


def test_a_window_across_midnight_every_night_needs_no_explaining():
    _, warnings = load_config(window(start="22:00", end="06:00", days="*"), "dev")
    assert not any("crosses midnight" in w for w in warnings)


def test_a_window_across_midnight_may_be_accepted():
    raw = window(start="22:00", end="06:00", days="1-5")
    raw["accepted"] = {**raw["accepted"], "windowAcrossMidnight": "the weekend batch jobs need the server"}
    _, warnings = load_config(raw, "dev")
    assert not any("crosses midnight" in w for w in warnings)


# --- the reference names what the code has ----------------------------------------------------


def section(title: str) -> str:
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "configuration.md").read_text()
    return text.split(f"### `{title}`\n", 1)[1].split("\n### ", 1)[0]


def test_model_family_is_a_row_of_the_model_table():
    assert re.search(r"^\| `family` \| `qwen2vl` \| ", section("model"), re.MULTILINE)


def test_every_accepted_key_is_a_row_of_the_accepted_table():
    from core.config import Accepted

    rows = section("accepted")
    missing = [f.alias or n for n, f in Accepted.model_fields.items() if f"| `{f.alias or n}` |" not in rows]
    assert not missing


@pytest.mark.parametrize(
    ("key", "value"),
    [("imageMaxTokens", 1814), ("promptTokens", 766), ("outputTokens", 790)],
)
def test_each_offered_budget_value_is_the_largest_that_fits(key, value):
    """9 slots of 3840 tokens: the value offered fits exactly, and one more does not."""
    load_config({"server": {"parallel": 9, "requestBudget": {key: value}}}, "dev")
    assert preview_problems({"server": {"parallel": 9, "requestBudget": {key: value + 1}}})


def test_the_offered_context_is_the_largest_multiple_of_256_that_fits_the_gpu_at_the_stacks_slot_count():
    small = {"cluster": {"gpuPool": {"vmSize": "Standard_NV12ads_A10_v5"}}}
    fits = StackConfig.model_validate({**small, "server": {"contextSize": 8192}})
    over = StackConfig.model_validate({**small, "server": {"contextSize": 8192 + 256}})
    assert rules.vram_fits(fits) and not rules.vram_fits(over)
    assert "lower server.contextSize to 8192 with" in only(preview_problems(small))


def test_a_window_across_midnight_needs_no_explaining_while_a_replica_is_kept():
    raw = window(start="22:00", end="06:00", days="1-5")
    raw["autoscaling"]["minReplicas"] = 1
    raw.pop("accepted")
    raw["cluster"] = {"gpuPool": {"minCount": 1}}
    _, warnings = load_config(raw, "dev")
    assert not any("crosses midnight" in w for w in warnings)
