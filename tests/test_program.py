"""The program under Pulumi's mocks: each component's resources, their inputs and their wiring."""

from __future__ import annotations

import hashlib
import json

import pytest

from core.catalog import ACR_PULL as ACR_PULL_ROLE
from core.catalog import ACR_PUSH as ACR_PUSH_ROLE
from core.config import StackConfig
from core.image import build_args, content_tag
from core.labels import ServingNames
from core.server_args import ServerPaths, llama_server_args
from tests.conftest import named, of_type, one, only, preview_problems, run_stack, unsecret

MC = "azure-native:containerservice:ManagedCluster"
POOL = "azure-native:containerservice:AgentPool"
ACR = "azure-native:containerregistry:Registry"
ROLE = "azure-native:authorization:RoleAssignment"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
IMAGE = "docker:index/image:Image"
KUBELET_OBJECT_ID = "33333333-3333-3333-3333-333333333333"  # what the mocks return for the cluster


@pytest.fixture(scope="module")
def dev():
    return run_stack({}, "dev")


def pod_spec(mocks) -> dict:
    return one(mocks, DEPLOYMENT)["spec"]["template"]["spec"]


def server_container(mocks) -> dict:
    return next(c for c in pod_spec(mocks)["containers"] if c["name"] == "llama-server")


# --- cluster -------------------------------------------------------------------------------


def test_cluster_has_a_tainted_system_pool_and_the_security_baseline(dev):
    mc = one(dev, MC)
    (system,) = mc["agentPoolProfiles"]
    assert system["mode"] == "System"
    assert system["nodeTaints"] == ["CriticalAddonsOnly=true:NoSchedule"]
    assert mc["kubernetesVersion"] == "1.36"
    assert mc["disableLocalAccounts"] is True
    assert mc["aadProfile"]["managed"] is True and mc["aadProfile"]["enableAzureRBAC"] is True
    assert mc["oidcIssuerProfile"] == {"enabled": True}
    assert mc["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert mc["networkProfile"]["networkPluginMode"] == "overlay"
    assert mc["networkProfile"]["networkPolicy"] == "cilium"
    assert mc["autoUpgradeProfile"] == {"upgradeChannel": "patch", "nodeOSUpgradeChannel": "NodeImage"}
    assert mc["addonProfiles"]["azurepolicy"]["enabled"] is True
    assert mc["addonProfiles"]["omsagent"]["config"]["logAnalyticsWorkspaceResourceID"].endswith(
        "/workspaces/llamacpp-dev-logs"
    )
    assert system["enableEncryptionAtHost"] is True


def test_gpu_pool_is_tainted_labelled_and_autoscaled_on_the_cluster(dev):
    pool = one(dev, POOL)
    assert pool["resourceName"] == one(dev, MC)["resourceName"]
    assert pool["mode"] == "User"
    assert pool["vmSize"] == "Standard_NV36ads_A10_v5"
    assert pool["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert pool["nodeLabels"] == {"llamacpp-aks/pool": "gpu"}
    assert pool["enableAutoScaling"] is True
    assert (pool["minCount"], pool["maxCount"]) == (1, 1)
    assert pool["gpuProfile"] == {"driver": "Install"}
    assert pool["osDiskType"] == "Ephemeral"
    assert "scaleSetPriority" not in pool


def test_spot_gpu_pool_sets_priority_and_eviction():
    pool = one(run_stack({"cluster": {"gpuPool": {"spot": True, "minCount": 0}}}), POOL)
    assert pool["scaleSetPriority"] == "Spot"
    assert pool["scaleSetEvictionPolicy"] == "Delete"
    assert pool["spotMaxPrice"] == -1


def test_registry_has_no_admin_user_and_kubelet_may_pull(dev):
    acr = one(dev, ACR)
    assert acr["adminUserEnabled"] is False
    roles = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1]: r.inputs for r in of_type(dev, ROLE)}
    pull = roles[ACR_PULL_ROLE]
    assert pull["principalId"] == KUBELET_OBJECT_ID
    assert pull["principalType"] == "ServicePrincipal"
    assert pull["scope"].endswith(f"/registries/{acr['registryName']}")
    assert roles[ACR_PUSH_ROLE]["scope"] == pull["scope"]


def test_every_kubernetes_object_uses_the_cluster_provider(dev):
    k8s = [r for r in dev.resources if r.typ.startswith("kubernetes:") and not r.typ.startswith("pulumi:")]
    assert len(k8s) >= 10
    for r in k8s:
        assert r.provider and "cluster-k8s" in r.provider, f"{r.typ} {r.name} uses {r.provider}"


def test_kubernetes_provider_logs_in_without_a_person(dev):
    provider = one(dev, "pulumi:providers:kubernetes")
    args = json.dumps(provider["kubeconfig"]) if not isinstance(provider["kubeconfig"], str) else provider["kubeconfig"]
    assert "--login" in args and "azurecli" in args and "devicecode" not in args


# --- device plugin -------------------------------------------------------------------------


def test_device_plugin_runs_only_on_gpu_nodes_and_tolerates_their_taint(dev):
    ds = named(dev, DAEMONSET, "nvidia-device-plugin")
    spec = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "nvidia-device-plugin"
    assert spec["nodeSelector"] == {"llamacpp-aks/pool": "gpu"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["priorityClassName"] == "system-node-critical"
    (container,) = spec["containers"]
    assert container["image"] == StackConfig().cluster.device_plugin_image
    assert container["volumeMounts"][0]["mountPath"] == "/var/lib/kubelet/device-plugins"


# --- image ---------------------------------------------------------------------------------


def test_image_is_built_for_amd64_with_pinned_args_and_pushed_to_the_registry(dev):
    image = one(dev, IMAGE)
    config = StackConfig().image
    login_server = f"{one(dev, ACR)['registryName']}.azurecr.io"
    assert image["build"]["platform"] == "linux/amd64"
    assert image["build"]["args"] == build_args(config)
    assert image["imageName"] == f"{login_server}/llama-server:{content_tag(config)}"
    registry = unsecret(image["registry"])  # it holds the push token
    assert registry["server"] == login_server
    assert registry["username"] == "00000000-0000-0000-0000-000000000000"
    assert image["buildOnPreview"] is False
    # The Deployment runs the pushed image by digest.
    assert server_container(dev)["image"].startswith(f"{login_server}/llama-server@sha256:")


def test_content_tag_changes_with_build_args_only(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    base = StackConfig().image
    assert content_tag(base, tmp_path) == content_tag(base, tmp_path)
    assert content_tag(base, tmp_path) != content_tag(base.model_copy(update={"cuda_architectures": "86;89"}), tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\nUSER 1\n")
    assert content_tag(base, tmp_path) != content_tag(StackConfig().image, tmp_path.parent / "missing")


def test_prebuilt_image_builds_nothing():
    ref = "example.azurecr.io/llama-server@sha256:" + "a" * 64
    mocks = run_stack({"image": {"prebuilt": ref}})
    assert not of_type(mocks, IMAGE)
    assert server_container(mocks)["image"] == ref
    assert all(c["image"] == ref for c in pod_spec(mocks)["initContainers"])


def test_prebuilt_image_must_be_pinned_by_digest():
    msg = only(preview_problems({"image": {"prebuilt": "example.azurecr.io/llama-server:latest"}}))
    assert msg.startswith(
        "image.prebuilt='example.azurecr.io/llama-server:latest' is not an image in a registry pinned by digest"
    )


# --- serving -------------------------------------------------------------------------------


def test_the_serving_objects_carry_the_names_the_tools_look_up(dev):
    """The load-test Job and the alert rules find these objects by core.labels.ServingNames alone."""
    names = ServingNames("dev")
    declared = {
        (r.inputs["kind"], r.inputs["metadata"]["name"], r.inputs["metadata"].get("namespace"))
        for r in dev.resources
        if r.typ.startswith("kubernetes:") and "kind" in r.inputs
    }
    ns = names.namespace
    assert ("Namespace", ns, None) in declared
    assert {
        ("Deployment", names.server, ns),
        ("Service", names.server, ns),
        ("Secret", names.api_key_secret, ns),
        ("PersistentVolumeClaim", names.claim, ns),
        ("NetworkPolicy", names.download_policy, ns),
        ("Job", names.download_job(StackConfig().model), ns),
    } <= declared


def test_server_args_are_exactly_the_rendered_command(dev):
    config = StackConfig()
    paths = ServerPaths(
        "/models/Qwen2-VL-7B-Instruct-Q4_K_M.gguf",
        "/models/mmproj-Qwen2-VL-7B-Instruct-f16.gguf",
        "/var/run/secrets/llama-server/api-key",
    )
    assert server_container(dev)["args"] == llama_server_args(config.server, paths)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"contextSize": 16384, "parallel": 4}, {"-c": "16384", "-np": "4"}),
        ({"batchSize": 1024, "ubatchSize": 256}, {"-b": "1024", "-ub": "256"}),
        ({"gpuLayers": 20, "threads": 12}, {"-ngl": "20", "-t": "12"}),
        ({"flashAttention": False}, {"-fa": "off"}),
        ({"cacheTypeK": "q8_0", "cacheTypeV": "q8_0"}, {"-ctk": "q8_0", "-ctv": "q8_0"}),
        ({"port": 9000, "alias": "qwen2-vl"}, {"--port": "9000", "--alias": "qwen2-vl"}),
        ({"requestBudget": {"imageMaxTokens": 1024}}, {"--image-max-tokens": "1024"}),
    ],
)
def test_each_flag_family_follows_config(raw, expected):
    args = server_container(run_stack({"server": raw}))["args"]
    for name, value in expected.items():
        assert flag(args, name) == value


def test_fixed_flags_are_always_explicit(dev):
    args = server_container(dev)["args"]
    assert flag(args, "--host") == "0.0.0.0"
    assert flag(args, "--fit") == "off"
    assert "--metrics" in args and "--no-kv-unified" in args
    assert flag(args, "--api-key-file") == "/var/run/secrets/llama-server/api-key"
    assert flag(args, "--mmproj").endswith("mmproj-Qwen2-VL-7B-Instruct-f16.gguf")


def test_kv_unified_flag_follows_config():
    args = server_container(run_stack({"server": {"kvUnified": True}}))["args"]
    assert "--kv-unified" in args and "--no-kv-unified" not in args


def test_probes_never_kill_a_loading_server(dev):
    c = server_container(dev)
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= StackConfig().server.startup_timeout_seconds
    # Liveness and readiness only start once the startup probe has passed.
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    # The files are checked in init containers, before any probe.
    assert [i["name"] for i in pod_spec(dev)["initContainers"]] == ["verify-model", "verify-mmproj"]


def test_pod_lands_only_on_gpu_nodes_with_one_gpu(dev):
    spec = pod_spec(dev)
    assert spec["nodeSelector"] == {"llamacpp-aks/pool": "gpu"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in spec["tolerations"]
    resources = server_container(dev)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" and resources["requests"]["nvidia.com/gpu"] == "1"


def test_secrets_never_appear_in_args_or_env():
    mocks = run_stack({}, secrets={"apiKey": "sk-test-key-0123456789", "hfToken": "hf_test_token_abcdef"})
    deployment = json.dumps(one(mocks, DEPLOYMENT))
    assert "sk-test-key-0123456789" not in deployment
    assert "hf_test_token_abcdef" not in deployment
    secrets = {r.inputs["metadata"]["name"]: r.inputs for r in of_type(mocks, "kubernetes:core/v1:Secret")}
    assert unsecret(secrets["llamacpp-dev-server-api-key"]["stringData"]) == {"api-key": "sk-test-key-0123456789"}
    assert unsecret(secrets["llamacpp-dev-server-hf-token"]["stringData"]) == {"token": "hf_test_token_abcdef"}
    # The token goes to the download Job only; the server pod never holds it.
    job = one(mocks, "kubernetes:batch/v1:Job")["spec"]["template"]["spec"]
    assert {"name": "HF_TOKEN_FILE", "value": "/var/run/secrets/huggingface/token"} in job["initContainers"][0]["env"]
    assert "hf-token" not in json.dumps(pod_spec(mocks))


def test_api_key_is_generated_when_not_set(dev):
    assert of_type(dev, "random:index/randomPassword:RandomPassword")


def test_one_replica_recreates_so_the_gpu_is_freed_first(dev):
    assert one(dev, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}
    assert not of_type(dev, "kubernetes:policy/v1:PodDisruptionBudget")


def test_several_replicas_roll_without_surge_and_spread_over_nodes():
    raw = {
        "server": {"replicas": 2},
        "cluster": {"gpuPool": {"maxCount": 2}},
        "model": {"storage": {"accessMode": "ReadWriteMany", "storageClass": "azurefile-csi-premium"}},
    }
    mocks = run_stack(raw)
    spec = one(mocks, DEPLOYMENT)["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    spread = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname" and spread[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert one(mocks, "kubernetes:policy/v1:PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_pod_runs_restricted(dev):
    ns = next(
        r.inputs
        for r in of_type(dev, "kubernetes:core/v1:Namespace")
        if r.inputs["metadata"]["name"] == "llamacpp-dev-serving"
    )
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = pod_spec(dev)
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"] + spec["initContainers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"] == {"drop": ["ALL"]}


def test_network_policy_admits_only_the_api_port_and_lets_nothing_out(dev):
    spec = named(dev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llamacpp-dev-server")["spec"]
    assert spec["ingress"][0]["ports"] == [{"port": 8008, "protocol": "TCP"}]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"] == []


def test_model_download_is_one_job_with_its_own_egress_policy(dev):
    job = one(dev, "kubernetes:batch/v1:Job")
    assert job["metadata"]["name"] == f"llamacpp-dev-server-download-{StackConfig().model.download_key()}"
    policy = named(dev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llamacpp-dev-server-download")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "model-download"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "model-download"


def test_a_new_api_key_rolls_the_pods():
    def key_hash(key: str) -> str:
        annotations = one(run_stack({}, secrets={"apiKey": key}), DEPLOYMENT)["spec"]["template"]["metadata"]
        return annotations["annotations"]["llamacpp-aks/api-key-sha256"]

    first, again, rotated = (
        key_hash("sk-first-key-0123456789"),
        key_hash("sk-first-key-0123456789"),
        key_hash("sk-new-key"),
    )
    assert first == again != rotated
    # Salted: the bare hash of a (possibly weak) key never shows in a preview.
    assert first != hashlib.sha256(b"sk-first-key-0123456789").hexdigest()
    assert len(first) == 64


def test_slots_web_ui_and_open_cors_are_off(dev):
    args = server_container(dev)["args"]
    assert "--no-slots" in args and "--no-webui" in args
    assert flag(args, "--cors-origins") == "localhost"
    assert "--webui" in server_container(run_stack({"server": {"webUi": True}}))["args"]


def test_only_the_exporter_may_name_the_gpus_itself(dev):
    policy = one(dev, "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy")
    binding = one(dev, "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert "NVIDIA_VISIBLE_DEVICES" in policy["spec"]["validations"][0]["expression"]


def test_metrics_scraper_sends_the_api_key(dev):
    monitor = named(dev, "kubernetes:azmonitoring.coreos.com/v1:PodMonitor", "llamacpp-dev-server")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {"name": "llamacpp-dev-server-api-key", "key": "api-key"}


def test_internal_load_balancer_by_config():
    svc = one(
        run_stack({"service": {"type": "InternalLoadBalancer", "allowedCidrs": ["10.100.0.0/16"]}}),
        "kubernetes:core/v1:Service",
    )
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}


def test_names_and_version_label_derive_from_config(dev):
    meta = one(dev, DEPLOYMENT)["metadata"]
    assert meta["name"] == "llamacpp-dev-server"
    assert meta["labels"]["app.kubernetes.io/version"] == StackConfig().image.llama_cpp_release
    assert flag(server_container(dev)["args"], "--alias") == StackConfig().server.alias


def test_changing_only_parallel_changes_only_the_deployment():
    before = run_stack({"server": {"parallel": 8}})
    after = run_stack({"server": {"parallel": 4}})
    a = {(r.typ, r.name): r.inputs for r in before.resources}
    b = {(r.typ, r.name): r.inputs for r in after.resources}
    assert a.keys() == b.keys()
    changed = sorted(key for key in a if a[key] != b[key])
    assert changed == [(DEPLOYMENT, "server-deployment")]


def test_cluster_runs_in_its_own_vnet_as_an_identity_that_may_join_the_node_subnet(dev):
    from core.catalog import NETWORK_CONTRIBUTOR

    (nodes,) = of_type(dev, "azure-native:network:Subnet")
    vnet = one(dev, "azure-native:network:VirtualNetwork")
    assert nodes.inputs["virtualNetworkName"] == vnet["virtualNetworkName"]
    subnet_id = f"/virtualNetworks/{vnet['virtualNetworkName']}/subnets/nodes"
    mc = one(dev, MC)
    assert mc["agentPoolProfiles"][0]["vnetSubnetID"].endswith(subnet_id)
    assert one(dev, POOL)["vnetSubnetID"].endswith(subnet_id)
    (identity_id,) = mc["identity"]["userAssignedIdentities"]
    assert mc["identity"]["type"] == "UserAssigned" and identity_id.endswith("/llamacpp-dev-aks-identity")
    (subnet_role,) = [r.inputs for r in of_type(dev, ROLE) if r.inputs["scope"].endswith(subnet_id)]
    assert subnet_role["roleDefinitionId"].endswith(NETWORK_CONTRIBUTOR)
    assert subnet_role["principalType"] == "ServicePrincipal"
    # The role must take effect before the cluster joins the subnet: a wait keyed on the assignment.
    waits = [r.inputs for r in of_type(dev, "time:index/sleep:Sleep") if r.name == "cluster-subnet-network-propagation"]
    assert len(waits) == 1


def test_deployer_roles_go_to_the_configured_principal_not_whoever_runs_the_preview():
    """CI's read-only identity previews a pull request: with cluster.deployerObjectId the deployer's
    roles name the deploy identity, so the preview shows no role change."""
    deploy_identity = "77777777-7777-7777-7777-777777777777"
    mocks = run_stack({"cluster": {"deployerObjectId": deploy_identity, "deployerPrincipalType": "ServicePrincipal"}})
    deployer_roles = [
        r.inputs for r in of_type(mocks, ROLE) if r.name in ("cluster-acr-push", "cluster-deployer-admin")
    ]
    assert len(deployer_roles) == 2
    assert {r["principalId"] for r in deployer_roles} == {deploy_identity}
    assert {r["principalType"] for r in deployer_roles} == {"ServicePrincipal"}


def test_a_deployer_override_must_name_its_principal_type():
    problem = only(preview_problems({"cluster": {"deployerObjectId": "77777777-7777-7777-7777-777777777777"}}))
    assert problem.startswith(
        "cluster.deployerObjectId=77777777-7777-7777-7777-777777777777 with cluster.deployerPrincipalType=auto"
    )
    assert "ServicePrincipal" in problem
