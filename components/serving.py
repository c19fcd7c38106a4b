"""ModelServer: serves one GGUF model with llama-server: namespace, secrets, model volume,
Deployment, Service, PodDisruptionBudget, NetworkPolicy and metrics scraping."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.cluster import AksCluster
from components.gpu import NvidiaDevicePlugin
from components.image import LlamaCppImage
from core import labels
from core.config import Autoscaling, ModelFiles, Server, Service
from specs import serving as spec
from specs.autoscaling import FRONT_PORT, FRONT_READY_PATH
from specs.ingress import HEALTH_PATH
from specs.k8s import namespace_metadata, pod_monitor_spec

API_KEY_LENGTH = 48


@dataclass(frozen=True, kw_only=True)
class ModelServerArgs:
    stack: str  # the stack name; every name and label derives from it
    server: Server  # llama-server settings, replicas, resources (config `server`)
    model: ModelFiles  # the model files and their volume (config `model`)
    service: Service  # how callers reach the API (config `service`)
    autoscaling: Autoscaling  # read for the replica bound and whether KEDA owns the count
    image: LlamaCppImage  # the image the pods run
    cluster: AksCluster  # its Kubernetes provider, and the registry pull role the pods need
    device_plugin: NvidiaDevicePlugin  # without it no node advertises a GPU
    public: bool = False  # config `ingress.enabled`: the public gateway's proxies may reach the pods
    api_key: pulumi.Input[str] | None = None  # secret config `apiKey`; generated when absent
    hf_token: pulumi.Input[str] | None = None  # secret config `hfToken`, for gated models


class ModelServer(pulumi.ComponentResource):
    """Serves one GGUF model with llama-server behind an OpenAI-compatible API."""

    def __init__(self, name: str, args: ModelServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:serving:ModelServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        stack, s = args.stack, args.server
        max_replicas = args.autoscaling.most_replicas(s.replicas)
        self.version = args.image.release
        self.labels = labels.labels(stack, "server", self.version)
        self.selector = labels.selector(stack, "server")
        # With scale from zero the Service callers use selects the standby front's pods
        # (components/front.py), and the front sends to the server's pods by a headless Service.
        self.has_front = args.autoscaling.scales_from_zero
        self.front_selector = labels.selector(stack, "front")
        # What the public gateway probes: the front's own readiness, or llama-server's /health.
        self.probe_path = FRONT_READY_PATH if self.has_front else HEALTH_PATH
        self.probe_port = FRONT_PORT if self.has_front else s.port  # the pod's port: the gateway probes endpoints
        self.container_port = s.port
        # Plain names for what must name the server before it exists (alert rules, dashboards).
        self.names = labels.ServingNames(stack)
        self.parallel = s.parallel

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=namespace_metadata(self.names.namespace, self.labels, "restricted"),
            opts=child.merge(pulumi.ResourceOptions(depends_on=[args.device_plugin, args.cluster.acr_pull])),
        )
        self.namespace = namespace.metadata["name"]
        api_key, api_key_secret, hf_secret = self._secrets(name, args, child)
        self.volume = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata=self._metadata(self.names.claim),
            spec=spec.volume_claim_spec(args.model),
            # Deleting the claim would throw away the downloaded model; keep it across replacements.
            opts=child.merge(pulumi.ResourceOptions(retain_on_delete=True)),
        )
        download = self._download(name, args, hf_secret, child)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=self._metadata(self.names.server), automount_service_account_token=False, opts=child
        )
        pod = spec.PodInputs(
            image=args.image.ref,
            names=self.names,
            service_account=account.metadata["name"],
            api_key_secret=api_key_secret.metadata["name"],
            api_key_sha256=self._key_fingerprint(name, api_key),
        )
        rollout_wait = f"{s.startup_timeout_seconds + spec.ROLLOUT_WAIT_MARGIN_SECONDS}s"
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._metadata(self.names.server),
            spec=spec.deployment_spec(s, args.model, pod, self.labels, self.selector, max_replicas),
            # With autoscaling on, KEDA owns the replica count; Pulumi sets only the starting size.
            opts=child.merge(
                pulumi.ResourceOptions(
                    depends_on=[download],
                    ignore_changes=["spec.replicas"] if args.autoscaling.enabled else None,
                    # Ready only once the model is loaded: wait as long as the startup probe allows,
                    # plus a GPU node, the image pull and the digest check.
                    custom_timeouts=pulumi.CustomTimeouts(create=rollout_wait, update=rollout_wait),
                )
            ),
        )
        self.deployment_name = self.deployment.metadata["name"]
        service = self._access(name, args, max_replicas, child)
        self.service_name: pulumi.Output[str] = service.metadata["name"]
        self.port = args.service.port

        self.endpoint = pulumi.Output.concat(
            "http://", service.metadata["name"], ".", self.namespace, ".svc.cluster.local:", str(args.service.port)
        )
        self.alias = pulumi.Output.from_input(s.alias)
        self.api_key: pulumi.Output[str] = pulumi.Output.secret(api_key)
        self.curl_example = self.endpoint.apply(lambda url: spec.curl_example(url, s.alias))
        self.register_outputs(
            {"endpoint": self.endpoint, "alias": self.alias, "apiKey": self.api_key, "curlExample": self.curl_example}
        )

    def _metadata(self, object_name: str) -> k8s.meta.v1.ObjectMetaArgsDict:
        """Metadata of an object in the serving namespace, with the server's labels."""
        return {"name": object_name, "namespace": self.namespace, "labels": self.labels}

    def _download(
        self, name: str, args: ModelServerArgs, hf_secret: k8s.core.v1.Secret | None, child: pulumi.ResourceOptions
    ) -> k8s.batch.v1.Job:
        """The Job that fills the model volume, and the only egress any serving pod has.

        Pulumi waits for it to complete before the Deployment changes, so a pod never starts on a
        missing or partial file; its name carries the model revision, so an unchanged model is no diff.
        """
        meta = labels.labels(args.stack, "model-download", self.version)
        select = labels.selector(args.stack, "model-download")
        inputs = spec.DownloadInputs(
            image=args.image.ref,
            names=self.names,
            hf_token_secret=hf_secret.metadata["name"] if hf_secret else None,
        )
        # The policy exists before the Job's pod, so the pod never runs without it.
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-download-netpol",
            metadata={"name": self.names.download_policy, "namespace": self.namespace, "labels": meta},
            spec=spec.download_network_policy_spec(select),
            opts=child,
        )
        job_name = self.names.download_job(args.model)
        wait = f"{args.model.download_timeout_seconds + spec.DOWNLOAD_WAIT_MARGIN_SECONDS}s"
        job = k8s.batch.v1.Job(
            f"{name}-download",
            metadata={"name": job_name, "namespace": self.namespace, "labels": meta},
            spec=spec.download_job_spec(args.model, inputs, meta, self.selector),
            opts=child.merge(
                pulumi.ResourceOptions(
                    depends_on=[self.volume, policy],
                    custom_timeouts=pulumi.CustomTimeouts(create=wait, update=wait),
                    delete_before_replace=True,
                )
            ),
        )
        return job

    def _secrets(
        self, name: str, args: ModelServerArgs, child: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], k8s.core.v1.Secret, k8s.core.v1.Secret | None]:
        """The API key (configured or generated) and the Hugging Face token, as Kubernetes Secrets."""
        api_key = self._api_key(name, args.api_key)
        api_key_secret = k8s.core.v1.Secret(
            f"{name}-api-key",
            metadata=self._metadata(self.names.api_key_secret),
            type="Opaque",
            string_data={labels.API_KEY_FILE: api_key},
            opts=child,
        )
        if args.hf_token is None:
            return api_key, api_key_secret, None
        hf_secret = k8s.core.v1.Secret(
            f"{name}-hf-token",
            metadata=self._metadata(self.names.hf_token_secret),
            type="Opaque",
            string_data={spec.HF_TOKEN_FILE: pulumi.Output.secret(args.hf_token)},
            opts=child,
        )
        return api_key, api_key_secret, hf_secret

    def _access(
        self, name: str, args: ModelServerArgs, max_replicas: int, child: pulumi.ResourceOptions
    ) -> k8s.core.v1.Service:
        """How the pods are reached: Service, disruption budget, network policy, metrics scraping."""
        select = self.selector
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={**self._metadata(self.names.server), "annotations": spec.service_annotations(args.service)},
            spec=spec.service_spec(args.service, self.front_selector if self.has_front else select),
            opts=child,
        )
        if self.has_front:
            k8s.core.v1.Service(
                f"{name}-pods",
                metadata=self._metadata(self.names.pods),
                spec=spec.pods_service_spec(args.server, select),
                opts=child,
            )
        if max_replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=self._metadata(self.names.server),
                spec=spec.disruption_budget_spec(select),
                opts=child,
            )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=self._metadata(self.names.server),
            spec=spec.network_policy_spec(args.server, args.service, select, public=args.public),
            opts=child,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="azmonitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=self._metadata(self.names.server),
            # llama-server guards /metrics with the API key like every route but /health.
            spec=pod_monitor_spec(select, spec.PORT_NAME, (self.names.api_key_secret, labels.API_KEY_FILE)),
            opts=child,
        )
        return service

    def _key_fingerprint(self, name: str, api_key: pulumi.Output[str]) -> pulumi.Output[str]:
        """sha256 of a random salt (kept in the state) and the key: it changes with the key, so the
        pods roll, and shows in previews without letting anyone test guesses of a weak key."""
        salt = random.RandomId(f"{name}-api-key-salt", byte_length=32, opts=pulumi.ResourceOptions(parent=self))
        fingerprint = pulumi.Output.all(salt.hex, api_key).apply(
            lambda v: hashlib.sha256(f"{v[0]}:{v[1]}".encode()).hexdigest()
        )
        return pulumi.Output.unsecret(fingerprint)

    def _api_key(self, name: str, configured: pulumi.Input[str] | None) -> pulumi.Output[str]:
        """The configured API key, or a generated one kept in the stack's state."""
        if configured is not None:
            return pulumi.Output.secret(configured)
        generated = random.RandomPassword(
            f"{name}-api-key", length=API_KEY_LENGTH, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return generated.result
