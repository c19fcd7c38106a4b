"""llamacpp-aks: Qwen2-VL 7B on AKS A10 nodes with llama-server, from one typed stack config.

Reads and validates the stack config, then wires the components; no resource is declared here.
"""

import os

import pulumi

from components.autoscaling import QueueAutoscaler, QueueAutoscalerArgs
from components.cluster import AksCluster, AksClusterArgs
from components.gpu import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.gpu_metrics import DcgmExporter, DcgmExporterArgs
from components.image import LlamaCppImage, LlamaCppImageArgs
from components.observability import ManagedPrometheus, ManagedPrometheusArgs
from components.serving import ModelServer, ModelServerArgs
from core.loading import ConfigError, load_config, plaintext_secrets, split_pulumi_config

stack = pulumi.get_stack()
# Pulumi has no public call that lists every key; unknown keys must fail, so read the whole map.
all_config = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
# The CLI names the keys it decrypted (PULUMI_CONFIG_SECRET_KEYS); where no list is given (mocks),
# nothing tells a plain value apart, and the offline render checks the stack file itself.
secret_keys = {
    *(pulumi.runtime.get_config_secret_keys_env() or []),
    *filter(pulumi.runtime.is_config_secret, all_config),
}
told = "PULUMI_CONFIG_SECRET_KEYS" in os.environ or bool(secret_keys)
raw, secrets = split_pulumi_config(all_config)
try:
    if told and (plaintext := plaintext_secrets(all_config, secret_keys)):
        raise ConfigError(plaintext)
    config, warnings = load_config(raw, stack)
except ConfigError as err:
    # A RunError prints its message without a stack trace and creates nothing.
    raise pulumi.RunError("invalid stack config:\n- " + "\n- ".join(err.problems)) from None
for warning in warnings:
    pulumi.log.warn(warning)

cluster = AksCluster(
    "cluster",
    AksClusterArgs(stack, config.cluster, config.registry, config.cluster.kubelogin_mode, config.autoscaling.enabled),
)
device_plugin = NvidiaDevicePlugin(
    "gpu",
    NvidiaDevicePluginArgs(stack, config.cluster.device_plugin_image, cluster.provider),
)
image = LlamaCppImage(
    "image",
    LlamaCppImageArgs(config.image, cluster.login_server, cluster.tenant_id, (cluster.acr_push,)),
)
server = ModelServer(
    "server",
    ModelServerArgs(
        stack,
        config,
        image.ref,
        cluster.provider,
        api_key=secrets.get("apiKey"),
        hf_token=secrets.get("hfToken"),
        depends_on=(device_plugin, cluster.acr_pull),
    ),
)

if config.cluster.monitoring:
    DcgmExporter("gpu-metrics", DcgmExporterArgs(stack, config.cluster.dcgm_exporter_image, cluster.provider))
    observability = ManagedPrometheus(
        "observability",
        ManagedPrometheusArgs(
            stack,
            config.cluster.location,
            cluster.resource_group.name,
            cluster.cluster.id,
            cluster.cluster.name,
            cluster.subscription_id,
            cluster.deployer_object_id,
            server.namespace_name,
            server.server_name,
            config.autoscaling.grafana,
        ),
    )
    pulumi.export("prometheusQueryEndpoint", observability.query_endpoint)
    if observability.grafana_endpoint is not None:
        pulumi.export("grafanaEndpoint", observability.grafana_endpoint)
    if config.autoscaling.enabled:
        QueueAutoscaler(
            "autoscaler",
            QueueAutoscalerArgs(
                stack,
                config.autoscaling,
                config.server.parallel,
                config.image.llama_cpp_release,
                config.cluster.location,
                cluster.resource_group.name,
                cluster.subscription_id,
                cluster.oidc_issuer,
                observability.workspace.id,
                observability.query_endpoint,
                server.namespace,
                server.deployment_name,
                cluster.provider,
            ),
        )

pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("resourceGroup", cluster.resource_group.name)
pulumi.export("registryLoginServer", cluster.login_server)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("image", image.ref)
pulumi.export("endpoint", server.endpoint)
pulumi.export("modelAlias", server.alias)
pulumi.export("apiKey", server.api_key)
pulumi.export("curlExample", server.curl_example)
