"""llamacpp-aks: Qwen2-VL 7B on AKS A10 nodes with llama-server, from one typed stack config.

Reads and validates the stack config, then wires the components; no resource is declared here.
"""

import os

import pulumi

from components.autoscaling import QueueAutoscaler, QueueAutoscalerArgs
from components.cluster import AksCluster, AksClusterArgs
from components.front import StandbyFront, StandbyFrontArgs
from components.gpu import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.gpu_metrics import DcgmExporter, DcgmExporterArgs
from components.image import LlamaCppImage, LlamaCppImageArgs
from components.ingress import PublicEndpoint, PublicEndpointArgs
from components.observability import ManagedPrometheus, ManagedPrometheusArgs
from components.serving import ModelServer, ModelServerArgs
from core.first_token import starting_answer
from core.loading import ConfigError, in_offline_render, load_config, plaintext_secrets, split_pulumi_config

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
try:
    raw, secrets = split_pulumi_config(all_config)
    if told and (plaintext := plaintext_secrets(all_config, secret_keys)):
        raise ConfigError(plaintext)
    # preview and up refuse a production stack that still holds the shipped example values.
    config, warnings = load_config(raw, stack, refuse_examples=not in_offline_render())
except ConfigError as err:
    # A RunError prints its message without a stack trace and creates nothing.
    raise pulumi.RunError("invalid stack config:\n- " + "\n- ".join(err.problems)) from None
for warning in warnings:
    pulumi.log.warn(warning)
c = config.cluster

cluster = AksCluster(
    "cluster", AksClusterArgs(stack=stack, cluster=c, registry=config.registry, keda_addon=config.autoscaling.enabled)
)
device_plugin = NvidiaDevicePlugin(
    "gpu", NvidiaDevicePluginArgs(stack=stack, image=c.device_plugin_image, cluster=cluster)
)
image = LlamaCppImage("image", LlamaCppImageArgs(image=config.image, cluster=cluster))
server = ModelServer(
    "server",
    ModelServerArgs(
        stack=stack,
        server=config.server,
        model=config.model,
        service=config.service,
        autoscaling=config.autoscaling,
        image=image,
        cluster=cluster,
        device_plugin=device_plugin,
        public=config.ingress.enabled,
        api_key=secrets.get("apiKey"),
        hf_token=secrets.get("hfToken"),
    ),
)
if config.autoscaling.scales_from_zero:
    StandbyFront(
        "front",
        StandbyFrontArgs(
            stack=stack,
            image=config.autoscaling.front_image,
            answer=starting_answer(config),
            service=config.service,
            public=config.ingress.enabled,
            cluster=cluster,
            server=server,
        ),
    )
if c.monitoring:
    DcgmExporter("gpu-metrics", DcgmExporterArgs(stack=stack, image=c.dcgm_exporter_image, cluster=cluster))
    metrics = ManagedPrometheus(
        "observability",
        ManagedPrometheusArgs(
            stack=stack, cluster=cluster, server=server, grafana=config.autoscaling.grafana, alerts=config.alerts
        ),
    )
    pulumi.export("prometheusQueryEndpoint", metrics.query_endpoint)
    if metrics.grafana_endpoint is not None:
        pulumi.export("grafanaEndpoint", metrics.grafana_endpoint)
    if config.autoscaling.enabled:
        QueueAutoscaler(
            "autoscaler",
            QueueAutoscalerArgs(
                stack=stack, autoscaling=config.autoscaling, cluster=cluster, metrics=metrics, server=server
            ),
        )

if config.ingress.enabled:
    public = PublicEndpoint(
        "ingress",
        PublicEndpointArgs(
            stack=stack, ingress=config.ingress, budget=config.server.request_budget, cluster=cluster, server=server
        ),
    )
    pulumi.export("publicUrl", public.url)
    # Point a CNAME from ingress.hostname at this name; the certificate follows once it resolves.
    pulumi.export("ingressFrontendFqdn", public.frontend_fqdn)
    pulumi.export("publicCurlExample", public.curl_example)

pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("resourceGroup", cluster.resource_group_name)
pulumi.export("registryLoginServer", cluster.login_server)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("image", image.ref)
pulumi.export("endpoint", server.endpoint)
pulumi.export("modelAlias", server.alias)
pulumi.export("apiKey", server.api_key)
pulumi.export("curlExample", server.curl_example)
