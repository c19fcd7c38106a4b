"""Every cross-field rule a stack config must pass before any resource is declared.

Each rule returns its problems as sentences that name the key path, the value, the limit and a
concrete fix. `check` runs them all, so a user sees every problem in one preview.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from core import networks, sizing
from core.catalog import (
    AKS_KUBERNETES_VERSIONS,
    CUDA_BASE_DIGESTS,
    GB,
    GIB,
    GPU_VM_SIZES,
    IMAGE_SCRIPTS,
    KV_CACHE_BLOCK_SIZE,
    UPSTREAM_IMAGES_WITHOUT_SCRIPTS,
    GpuVmSize,
    cuda_limit_for,
)
from core.config import StackConfig, parse_quantity
from core.labels import compact_name
from core.stack_file import shown

# The model volume holds the model and projector plus their partial downloads during a resume.
VOLUME_MARGIN = 1.2


def gpu_vm(config: StackConfig) -> GpuVmSize | None:
    return GPU_VM_SIZES.get(config.cluster.gpu_pool.vm_size)


def request_tokens(config: StackConfig) -> int:
    b = config.server.request_budget
    return sizing.worst_case_request_tokens(b.images, b.image_max_tokens, b.prompt_tokens, b.output_tokens)


def slot_tokens(config: StackConfig) -> int:
    s = config.server
    return sizing.tokens_per_slot(s.context_size, s.parallel, s.kv_unified, config.model.architecture.max_context)


def vram(config: StackConfig) -> sizing.VramEstimate:
    s, m = config.server, config.model
    cells = sizing.allocated_context(s.context_size, s.parallel, s.kv_unified)
    return sizing.vram_estimate(
        m.shape,
        m.size_bytes,
        m.mmproj_size_bytes,
        s.gpu_layers,
        cells,
        s.cache_type_k,
        s.cache_type_v,
        s.ubatch_size,
    )


# --- the rules -----------------------------------------------------------------------------


def gpu_vm_size_known(c: StackConfig) -> list[str]:
    if gpu_vm(c):
        return []
    return [
        f"cluster.gpuPool.vmSize={c.cluster.gpu_pool.vm_size} is not an A10 GPU size this stack "
        f"knows; use one of {', '.join(GPU_VM_SIZES)}."
    ]


def batch_holds_ubatch(c: StackConfig) -> list[str]:
    s = c.server
    if s.ubatch_size <= s.batch_size:
        return []
    return [
        f"server.ubatchSize={s.ubatch_size} is larger than server.batchSize={s.batch_size} "
        f"(a micro-batch is a slice of a batch); set server.ubatchSize <= {s.batch_size} or "
        f"server.batchSize >= {s.ubatch_size}."
    ]


def context_within_model(c: StackConfig) -> list[str]:
    s, max_ctx = c.server, c.model.architecture.max_context
    per_seq = sizing.context_per_sequence(s.context_size, s.parallel, s.kv_unified)
    if per_seq <= max_ctx:
        return []
    fix_ctx = max_ctx if s.kv_unified else max_ctx * s.parallel
    return [
        f"server.contextSize={s.context_size} with server.parallel={s.parallel} gives "
        f"{per_seq} tokens per slot, above the model's training context "
        f"model.architecture.maxContext={max_ctx}; llama-server would silently cap each slot "
        f"at {max_ctx}. Set server.contextSize <= {fix_ctx}"
        + ("." if s.kv_unified else f" or raise server.parallel to {-(-per_seq * s.parallel // max_ctx)}.")
    ]


def slot_holds_request(c: StackConfig) -> list[str]:
    s, b = c.server, c.server.request_budget
    per_slot, need = slot_tokens(c), request_tokens(c)
    if per_slot >= need:
        return []
    what = (
        f"{b.images} image x {sizing.worst_case_image_tokens(b.image_max_tokens)} "
        f"+ prompt {b.prompt_tokens} + output {b.output_tokens}"
    )
    max_ctx = c.model.architecture.max_context
    if s.kv_unified:
        fix = f"Set server.contextSize >= {need}" if need <= max_ctx else "Lower the request budget"
        return [
            f"server.contextSize={s.context_size} (unified KV) gives {per_slot} tokens to one "
            f"request; a request needs up to {need} ({what}). {fix}."
        ]
    fixes = []
    best = sizing.max_parallel_for(s.context_size, need, max_ctx)
    if best >= 1:
        fixes.append(f"set server.parallel <= {best}")
    if need <= max_ctx:
        fixes.append(f"raise server.contextSize to {sizing.min_context_for(s.parallel, need)}")
    fixes.append("lower server.requestBudget.imageMaxTokens")
    return [
        f"server.parallel={s.parallel} with server.contextSize={s.context_size} gives "
        f"{per_slot} tokens per slot, but one request may need {need} ({what}); "
        f"{' or '.join(fixes)}."
    ]


def fits_gpu_memory(c: StackConfig) -> list[str]:
    vm = gpu_vm(c)
    if vm is None:
        return []
    headroom = c.server.vram_headroom
    need = vram(c).total_bytes
    limit = sizing.usable_gpu_bytes(vm, headroom)
    if need <= limit:
        return []
    fitting = [
        v.name
        for v in sorted(GPU_VM_SIZES.values(), key=lambda v: (v.gpu_memory_gb, v.vcpus))
        if sizing.usable_gpu_bytes(v, headroom) >= need
    ]
    fix = (
        f"use cluster.gpuPool.vmSize={fitting[0]} (the smallest size that fits)" if fitting else "no A10 size holds it"
    )
    return [
        f"the VRAM estimate {need / GB:.2f} GB for cluster.gpuPool.vmSize={vm.name} is over its "
        f"{vm.gpu_memory_gb:g} GB less {headroom:.0%} headroom ({limit / GB:.2f} GB); {fix}, "
        f"or lower server.contextSize, server.parallel or server.cacheTypeK/cacheTypeV."
    ]


def pool_counts_ordered(c: StackConfig) -> list[str]:
    p = c.cluster.gpu_pool
    if p.min_count <= p.max_count:
        return []
    return [
        f"cluster.gpuPool.minCount={p.min_count} is above cluster.gpuPool.maxCount={p.max_count}; "
        f"set minCount <= {p.max_count} or maxCount >= {p.min_count}."
    ]


def replicas_key(c: StackConfig) -> str:
    return "autoscaling.maxReplicas" if c.autoscaling.enabled else "server.replicas"


def pool_holds_replicas(c: StackConfig) -> list[str]:
    vm = gpu_vm(c)
    if vm is None:
        return []
    p, replicas, key = c.cluster.gpu_pool, c.max_replicas, replicas_key(c)
    capacity = p.max_count * vm.gpus
    if replicas <= capacity:
        return []
    return [
        f"{key}={replicas} needs {replicas} GPUs, but cluster.gpuPool.maxCount="
        f"{p.max_count} nodes of {vm.name} ({vm.gpus} GPU each) hold {capacity}; set "
        f"cluster.gpuPool.maxCount >= {sizing.gpu_nodes_for(replicas, vm)} or {key} <= {capacity}."
    ]


def pod_fits_node(c: StackConfig) -> list[str]:
    vm = gpu_vm(c)
    if vm is None:
        return []
    node = sizing.node_allocatable(vm)
    req = c.server.resources.requests
    problems = []
    cpu_millis = parse_quantity(req.cpu) * 1000
    if cpu_millis > node.cpu_millis:
        problems.append(
            f"server.resources.requests.cpu={req.cpu} is more than a {vm.name} node can allocate "
            f"({node.cpu_millis}m of {vm.vcpus} vCPU); set it <= {node.cpu_millis}m or pick a "
            f"larger cluster.gpuPool.vmSize."
        )
    mem = parse_quantity(req.memory)
    if mem > node.memory_bytes:
        problems.append(
            f"server.resources.requests.memory={req.memory} is more than a {vm.name} node can "
            f"allocate ({node.memory_bytes // GIB}Gi of {vm.memory_gib}Gi); set it <= "
            f"{node.memory_bytes // GIB}Gi or pick a larger cluster.gpuPool.vmSize."
        )
    return problems


def limits_cover_requests(c: StackConfig) -> list[str]:
    r = c.server.resources
    problems = []
    for key in ("cpu", "memory"):
        request, limit = getattr(r.requests, key), getattr(r.limits, key)
        if parse_quantity(limit) < parse_quantity(request):
            problems.append(
                f"server.resources.limits.{key}={limit} is below server.resources.requests.{key}="
                f"{request}; Kubernetes rejects such a pod. Set limits.{key} >= {request}."
            )
    return problems


def volume_holds_model(c: StackConfig) -> list[str]:
    m = c.model
    files = m.size_bytes + m.mmproj_size_bytes
    need_gi = -(-round(files * VOLUME_MARGIN) // GIB)
    if m.storage.size_gi >= need_gi:
        return []
    return [
        f"model.storage.sizeGi={m.storage.size_gi} cannot hold the model and projector "
        f"({files / GB:.2f} GB) with {VOLUME_MARGIN - 1:.0%} margin for a resumed download; "
        f"set model.storage.sizeGi >= {need_gi}."
    ]


def volume_attaches_to_replicas(c: StackConfig) -> list[str]:
    st, key, replicas = c.model.storage, replicas_key(c), c.max_replicas
    if replicas == 1 or st.access_mode == "ReadWriteMany":
        return []
    return [
        f"{key}={replicas} with model.storage.accessMode=ReadWriteOnce: one disk "
        f"attaches to one node, so the other pods would hang with a Multi-Attach error; set "
        f"model.storage.accessMode=ReadWriteMany with model.storage.storageClass=azurefile-csi-premium, "
        f"or {key}=1."
    ]


def autoscaling_is_coherent(c: StackConfig) -> list[str]:
    a, cl = c.autoscaling, c.cluster
    if not a.enabled:
        return []
    problems = []
    if not cl.monitoring:
        problems.append(
            "autoscaling.enabled=true needs cluster.monitoring=true: the scaler reads llama-server's "
            "queue from managed Prometheus; set cluster.monitoring=true or autoscaling.enabled=false."
        )
    if not cl.workload_identity:
        problems.append(
            "autoscaling.enabled=true needs cluster.workloadIdentity=true: KEDA queries managed "
            "Prometheus with a workload identity; set cluster.workloadIdentity=true."
        )
    if a.min_replicas > a.max_replicas:
        problems.append(
            f"autoscaling.minReplicas={a.min_replicas} is above autoscaling.maxReplicas={a.max_replicas}; "
            f"set minReplicas <= {a.max_replicas} or maxReplicas >= {a.min_replicas}."
        )
    if not a.min_replicas <= c.server.replicas <= a.max_replicas:
        problems.append(
            f"server.replicas={c.server.replicas} (the starting size) is outside autoscaling.minReplicas="
            f"{a.min_replicas}..maxReplicas={a.max_replicas}; set server.replicas within that range."
        )
    return problems


def scale_to_zero_can_wake_and_attach(c: StackConfig) -> list[str]:
    a, st, zones = c.autoscaling, c.model.storage, c.cluster.zones
    if not a.enabled or a.min_replicas > 0:
        return []
    problems = []
    if a.active_hours is None:
        problems.append(
            "autoscaling.minReplicas=0 without autoscaling.activeHours: llama-server's own metrics "
            "vanish with its last pod, so nothing would ever scale it up again; set "
            "autoscaling.activeHours (a daily window with one replica) or autoscaling.minReplicas=1."
        )
    if st.access_mode == "ReadWriteOnce" and len(zones) > 1 and "zrs" not in st.storage_class.lower():
        problems.append(
            f"autoscaling.minReplicas=0 with a zonal ReadWriteOnce disk (model.storage.storageClass="
            f"{st.storage_class}) and cluster.zones={zones}: the node that wakes the server may come up "
            f"in another zone and cannot attach the disk; use a ZRS storage class, "
            f"model.storage.accessMode=ReadWriteMany, or a single zone."
        )
    return problems


def kubernetes_version_supported(c: StackConfig) -> list[str]:
    v = c.cluster.kubernetes_version
    match = re.fullmatch(r"(1\.[0-9]+)(\.[0-9]+)?", v)
    if match and match.group(1) in AKS_KUBERNETES_VERSIONS:
        return []
    return [
        f"cluster.kubernetesVersion={v} is not a Kubernetes version AKS supports; use one of "
        f"{', '.join(AKS_KUBERNETES_VERSIONS)} (or a patch of one, such as {AKS_KUBERNETES_VERSIONS[-1]}.0)."
    ]


def cuda_base_is_pinned(c: StackConfig) -> list[str]:
    v = c.image.cuda_version
    if v in CUDA_BASE_DIGESTS:
        return []
    return [
        f"image.cudaVersion={v} has no pinned base image digests; the image is built only from "
        f"digest-pinned CUDA images. Use one of {', '.join(CUDA_BASE_DIGESTS)}, or add the digests of "
        f"nvidia/cuda:{v}-devel-ubuntu24.04 and -runtime-ubuntu24.04 to CUDA_BASE_DIGESTS in core/catalog.py."
    ]


def cuda_within_driver(c: StackConfig) -> list[str]:
    vm = gpu_vm(c)
    if vm is None:
        return []
    major, minor, _ = (int(x) for x in c.image.cuda_version.split("."))
    limit = cuda_limit_for(vm)
    if (major, minor) <= limit:
        return []
    return [
        f"image.cudaVersion={c.image.cuda_version} is newer than CUDA {limit[0]}.{limit[1]}, the "
        f"most the driver AKS installs on {vm.gpu_family} nodes supports; the server would fail "
        f"to start. Set image.cudaVersion to {limit[0]}.{limit[1]}.1 or older."
    ]


# Production rules key on cluster.production, never on the stack's name: a stack named
# "production" or "prod-eu" gets them only by saying so, and gets them whatever it is called.


def prod_pins_digests(c: StackConfig, stack: str) -> list[str]:
    if not c.cluster.production:
        return []
    pins = (("sha256", "file", c.model.sha256), ("mmprojSha256", "mmprojFile", c.model.mmproj_sha256))
    return [
        f"model.{key} is empty with cluster.production=true (stack {stack}); production must pin the "
        f"digest of model.{file_key}. Set model.{key} to the sha256 shown on the file's page."
        for key, file_key, digest in pins
        if not digest
    ]


def private_or_authorized(c: StackConfig, stack: str) -> list[str]:
    cl = c.cluster
    if not cl.production or cl.private_cluster or cl.authorized_ip_ranges:
        return []
    return [
        f"cluster.authorizedIpRanges is empty and cluster.privateCluster is false with "
        f"cluster.production=true (stack {stack}): the API server would be open to the internet; list "
        f"your networks in cluster.authorizedIpRanges or set cluster.privateCluster=true."
    ]


def prod_ranges_within_one_organisation(c: StackConfig, stack: str) -> list[str]:
    """The ranges that may reach the API server or the load balancer, measured as a union of
    public addresses: split, mapped or NAT64 forms of 'everyone' count as what they admit."""
    if not c.cluster.production:
        return []
    out = []
    for key, cidrs, what in (
        ("cluster.authorizedIpRanges", c.cluster.authorized_ip_ranges, "the API server"),
        ("service.allowedCidrs", c.service.allowed_cidrs, "the model server's load balancer"),
    ):
        space = networks.public_space(cidrs)
        if space.too_wide:
            out.append(
                f"{key}={shown(cidrs)} together admit {space.describe()} with cluster.production=true "
                f"(stack {stack}), more than one organisation holds (at most a /8 of IPv4 and a /32 of IPv6): "
                f"{what} would be open to the internet; list only your own networks, such as 198.51.100.0/24."
            )
    return out


# Switches a production cluster keeps on: local accounts off (only Entra ID signs in), Azure
# Policy (the Pod Security and image admission rules), host encryption of node disks.
PRODUCTION_SWITCHES = (
    ("cluster.localAccountsDisabled", "local_accounts_disabled", "the static admin kubeconfig would bypass Entra ID"),
    ("cluster.azurePolicy", "azure_policy", "the admission policies would not run"),
    ("cluster.encryptionAtHost", "encryption_at_host", "node disks and caches would be unencrypted at the host"),
)


def prod_security_switches_on(c: StackConfig, stack: str) -> list[str]:
    if not c.cluster.production:
        return []
    return [
        f"{key}=false with cluster.production=true (stack {stack}): {why}; set {key}=true."
        for key, attr, why in PRODUCTION_SWITCHES
        if not getattr(c.cluster, attr)
    ]


def prebuilt_image_is_trusted(c: StackConfig, stack: str) -> list[str]:
    """A prebuilt image must be one built from image/: the download Job runs its fetch-model.sh and
    the server's preStop hook its drain.sh. In production it comes from the stack's own registry or
    one listed in image.trustedRegistries."""
    ref = c.image.prebuilt
    if ref is None:
        return []
    host, repository = ref.split("/", 1)[0], ref.split("/", 1)[1].split("@")[0].split(":")[0]
    if f"{host}/{repository}" in UPSTREAM_IMAGES_WITHOUT_SCRIPTS:
        return [
            f"image.prebuilt={shown(ref)} is llama.cpp's upstream image, which has no "
            f"{' or '.join(IMAGE_SCRIPTS)}: the model download Job and the drain on stop would fail; build "
            f"image/ (unset image.prebuilt) or push that build and set image.prebuilt to its digest."
        ]
    if not c.cluster.production:
        return []
    own = re.fullmatch(rf"{re.escape(compact_name(stack, 'acr'))}[a-z0-9]*\.azurecr\.io", host)
    if own or host in c.image.trusted_registries:
        return []
    return [
        f"image.prebuilt={shown(ref)} comes from {host} with cluster.production=true (stack {stack}); "
        f"production runs images from the stack's own registry or from image.trustedRegistries: push the "
        f"image there, or add {host} to image.trustedRegistries if it holds builds of image/."
    ]


def internal_load_balancer_has_callers(c: StackConfig) -> list[str]:
    svc = c.service
    if svc.type != "InternalLoadBalancer" or svc.allowed_cidrs:
        return []
    return [
        "service.type=InternalLoadBalancer with service.allowedCidrs=[]: the server's NetworkPolicy "
        "admits no address outside the cluster, so every caller through the load balancer would be "
        "dropped; list the ranges callers arrive from in service.allowedCidrs (their VNet ranges: "
        "the Service keeps callers' addresses with externalTrafficPolicy Local), or set "
        "service.type=ClusterIP."
    ]


def deployer_override_names_its_type(c: StackConfig) -> list[str]:
    cl = c.cluster
    if cl.deployer_object_id is None or cl.deployer_principal_type != "auto":
        return []
    return [
        f"cluster.deployerObjectId={cl.deployer_object_id} with cluster.deployerPrincipalType=auto: the "
        f"type would be read from the token of whoever runs the program, not of that principal; set "
        f"cluster.deployerPrincipalType to ServicePrincipal (CI's deploy identity) or User."
    ]


def ingress_is_complete(c: StackConfig) -> list[str]:
    """A public endpoint needs a name for its certificate, an address for Let's Encrypt, and the
    workload identity its controller signs in to Azure with."""
    i = c.ingress
    if not i.enabled:
        return []
    out = []
    if i.hostname is None:
        out.append(
            "ingress.hostname is not set with ingress.enabled=true: the certificate and the route need "
            "the name callers use; set ingress.hostname to a name you control, such as llm.example.com, "
            "and point its CNAME at the ingressFrontendFqdn stack output."
        )
    if i.acme_email is None:
        out.append(
            "ingress.acmeEmail is not set with ingress.enabled=true: Let's Encrypt sends expiry and "
            "problem notices there; set ingress.acmeEmail to a monitored address."
        )
    if not c.cluster.workload_identity:
        out.append(
            "cluster.workloadIdentity=false with ingress.enabled=true: the Application Gateway for "
            "Containers controller signs in to Azure with a workload identity; set "
            "cluster.workloadIdentity=true or ingress.enabled=false."
        )
    return out


def prod_has_admin_group(c: StackConfig, stack: str) -> list[str]:
    if not c.cluster.production or c.cluster.entra_admin_group_object_ids:
        return []
    return [
        f"cluster.entraAdminGroupObjectIds is empty with cluster.production=true (stack {stack}): cluster "
        f"admin would belong only to whoever ran `pulumi up` last; list the object id of a break-glass "
        f"Entra ID group in cluster.entraAdminGroupObjectIds."
    ]


def prod_alerts_notify_someone(c: StackConfig, stack: str) -> list[str]:
    a = c.alerts
    if not c.cluster.production or not c.cluster.monitoring or a.emails or a.webhooks:
        return []
    return [
        f"alerts.emails and alerts.webhooks are empty with cluster.production=true (stack {stack}): the "
        f"alert rules would fire and notify nobody; add an on-call address to alerts.emails or an HTTPS "
        f"endpoint to alerts.webhooks."
    ]


# --- rules that come from llama-server ------------------------------------------------------
# What the pinned llama-server (b11434) refuses at start, or silently changes, for the flags
# core/server_args.py renders. A refusal keeps the server's own words next to its rule, so the
# end-to-end test can start the real server on a config that breaks only that rule and check
# that it exits with them. Sources are files and lines of the release's tree.

# src/llama-context.cpp:3849, in llama_init_from_model: -fa off with a quantized -ctv. With -fa
# auto the server turns flash attention on instead (llama-context.cpp:3844-3846).
SERVER_SAYS_QUANTIZED_V_NEEDS_FLASH_ATTENTION = "quantized V cache requires flash_attn to be enabled"
# src/llama-context.cpp:3858 (K) and 3869 (V), in llama_init_from_model.
SERVER_SAYS_BLOCK_DOES_NOT_DIVIDE_HEAD = (
    "{cache} cache type {type} with block size {block} does not divide n_embd_head_{part}={head}"
)


def quantized_v_cache_needs_flash_attention(c: StackConfig) -> list[str]:
    s = c.server
    if KV_CACHE_BLOCK_SIZE[s.cache_type_v] == 1 or s.flash_attention != "off":
        return []
    return [
        f"server.cacheTypeV={s.cache_type_v} with server.flashAttention=off: llama-server refuses a "
        f'quantized V cache without flash attention ("{SERVER_SAYS_QUANTIZED_V_NEEDS_FLASH_ATTENTION}") '
        f"and the pod would crash-loop; set server.flashAttention to on or auto, or server.cacheTypeV "
        f"to f16 or bf16."
    ]


def _blocks_not_dividing_head(c: StackConfig) -> list[tuple[str, str, int]]:
    """(K or V, cache type, block size) of each quantized cache the server checks against the head
    size and refuses: only with flash attention on or auto (llama-context.cpp:3854 and 3865)."""
    s, head = c.server, c.model.architecture.head_dim
    if s.flash_attention == "off":
        return []
    found: list[tuple[str, str, int]] = []
    for cache, kv_type in (("K", s.cache_type_k), ("V", s.cache_type_v)):
        block = KV_CACHE_BLOCK_SIZE[kv_type]
        if head % block:
            found.append((cache, kv_type, block))
    return found


def cache_blocks_divide_head_size(c: StackConfig) -> list[str]:
    head = c.model.architecture.head_dim
    return [
        f"server.cacheType{cache}={kv_type} stores blocks of {block} elements, which do not divide "
        f'model.architecture.headDim={head}; llama-server refuses to start ("{server_block_message(cache, kv_type, block, head)}"). '
        f"Set server.cacheType{cache} to f16 or bf16, or use a model whose head size is a multiple of {block}."
        for cache, kv_type, block in _blocks_not_dividing_head(c)
    ]


def quantized_k_heads_start_on_block_boundaries(c: StackConfig) -> list[str]:
    # With flash attention off the server checks nothing (llama-context.cpp:3854 needs it on), but
    # each head's keys are a view of the K cache whose row step is ggml_row_size(type, head)
    # (src/llama-kv-cache.cpp:1308-1310): for a head that is not whole blocks, that step lands
    # inside a block (ggml_row_size's divisibility check is a plain assert, off in release
    # builds: ggml/src/ggml.c:1342). The server then aborts at start when a layer's keys
    # (heads x kvHeads) are not whole blocks either (GGML_ASSERT at ggml/src/ggml.c:1797, seen on
    # head 16 x 1 KV head), and otherwise starts and reads every head but the first from the
    # middle of a block (head 16 x 2 KV heads starts). Neither may reach a cluster.
    s, a = c.server, c.model.architecture
    block = KV_CACHE_BLOCK_SIZE[s.cache_type_k]
    if s.flash_attention != "off" or a.head_dim % block == 0:
        return []
    return [
        f"server.cacheTypeK={s.cache_type_k} with server.flashAttention=off stores blocks of {block} "
        f"elements, which do not divide model.architecture.headDim={a.head_dim}: llama-server would "
        f"abort at start or read each head's keys from the middle of a block (flash attention on is "
        f"refused outright). Set server.cacheTypeK to f16 or bf16."
    ]


def server_block_message(cache: str, kv_type: str, block: int, head: int) -> str:
    return SERVER_SAYS_BLOCK_DOES_NOT_DIVIDE_HEAD.format(
        cache=cache, type=kv_type, block=block, part=cache.lower(), head=head
    )


def batch_within_context(c: StackConfig) -> list[str]:
    # src/llama-context.cpp:248: with causal attention n_batch = min(-c, -b), before -c is padded;
    # -ub is then clamped to it (line 250). Silent, so refused rather than rendered.
    s = c.server
    if s.batch_size <= s.context_size:
        return []
    return [
        f"server.batchSize={s.batch_size} is above server.contextSize={s.context_size}; llama-server "
        f"would silently use a batch of {s.context_size} (a batch never exceeds the context). Set "
        f"server.batchSize <= {s.context_size}."
    ]


@dataclass(frozen=True)
class ServerRefusal:
    """A rule whose configs the pinned llama-server itself refuses: it exits at start, saying so."""

    rule: Callable[[StackConfig], list[str]]
    says: Callable[[StackConfig], str]  # the server's error line for a config only this rule refuses
    source: str  # where the check is in the release's tree


def _first_block_message(c: StackConfig) -> str:
    cache, kv_type, block = _blocks_not_dividing_head(c)[0]  # the server checks K before V
    return server_block_message(cache, kv_type, block, c.model.architecture.head_dim)


SERVER_REFUSALS: tuple[ServerRefusal, ...] = (
    ServerRefusal(
        quantized_v_cache_needs_flash_attention,
        lambda c: SERVER_SAYS_QUANTIZED_V_NEEDS_FLASH_ATTENTION,
        "src/llama-context.cpp:3843-3851",
    ),
    ServerRefusal(cache_blocks_divide_head_size, _first_block_message, "src/llama-context.cpp:3854-3874"),
)


RULES: tuple[Callable[[StackConfig], list[str]], ...] = (
    gpu_vm_size_known,
    batch_holds_ubatch,
    context_within_model,
    slot_holds_request,
    fits_gpu_memory,
    pool_counts_ordered,
    pool_holds_replicas,
    pod_fits_node,
    limits_cover_requests,
    volume_holds_model,
    volume_attaches_to_replicas,
    autoscaling_is_coherent,
    scale_to_zero_can_wake_and_attach,
    kubernetes_version_supported,
    cuda_within_driver,
    cuda_base_is_pinned,
    internal_load_balancer_has_callers,
    quantized_v_cache_needs_flash_attention,
    cache_blocks_divide_head_size,
    quantized_k_heads_start_on_block_boundaries,
    batch_within_context,
    ingress_is_complete,
    deployer_override_names_its_type,
)
STACK_RULES: tuple[Callable[[StackConfig, str], list[str]], ...] = (
    prod_pins_digests,
    private_or_authorized,
    prod_ranges_within_one_organisation,
    prod_security_switches_on,
    prebuilt_image_is_trusted,
    prod_has_admin_group,
    prod_alerts_notify_someone,
)


def warnings(c: StackConfig, stack: str) -> list[str]:
    out = []
    p = c.cluster.gpu_pool
    if c.model.storage.access_mode == "ReadWriteOnce" and p.max_count > 1:
        out.append(
            f"model.storage.accessMode=ReadWriteOnce with cluster.gpuPool.maxCount={p.max_count}: a new "
            f"model revision's download Job prefers the running server's node, but if it lands on another "
            f"GPU node it waits on a Multi-Attach error until its deadline; use ReadWriteMany "
            f"(azurefile-csi-premium) or cluster.gpuPool.maxCount=1."
        )
    if p.spot and p.min_count > 0:
        out.append(
            f"cluster.gpuPool.spot=true with minCount={p.min_count}: Azure may evict spot GPU "
            f"nodes at any time, and the model server is down until a node returns."
        )
    for key, value in (("sha256", c.model.sha256), ("mmprojSha256", c.model.mmproj_sha256)):
        if not value:
            out.append(
                f"model.{key} is empty: the first download is trusted and its digest recorded "
                f"beside the file; pin it before production."
            )
    a = c.autoscaling
    if a.enabled and a.min_replicas == 0:
        out.append(
            "autoscaling.minReplicas=0: outside autoscaling.activeHours an idle server scales to zero; "
            "the next window's first replica waits for a GPU node (about 5-10 minutes with the driver) "
            "and the model load before it answers."
        )
        if c.cluster.gpu_pool.min_count > 0:
            out.append(
                f"autoscaling.minReplicas=0 with cluster.gpuPool.minCount={c.cluster.gpu_pool.min_count}: "
                f"the GPU nodes stay (and cost) while no replica runs; set cluster.gpuPool.minCount=0."
            )
    if c.cluster.monitoring and not c.alerts.emails and not c.alerts.webhooks and not c.cluster.production:
        out.append(
            "alerts.emails and alerts.webhooks are empty: the alert rules fire but notify nobody; "
            "add an address to alerts.emails or an HTTPS endpoint to alerts.webhooks."
        )
    timeout = sizing.request_timeout_seconds(c.server.request_budget.output_tokens)
    if c.ingress.enabled and timeout > sizing.AGC_STREAM_IDLE_TIMEOUT_SECONDS:
        out.append(
            f"ingress.enabled=true with server.requestBudget.outputTokens="
            f"{c.server.request_budget.output_tokens}: an answer may take up to {timeout} s, but Application "
            f"Gateway for Containers closes a connection idle for {sizing.AGC_STREAM_IDLE_TIMEOUT_SECONDS} s; "
            f'callers of long answers must stream ("stream": true), which sends bytes as tokens come.'
        )
    if c.max_replicas == 1:
        out.append(
            "server.replicas=1: updates use the Recreate strategy (the GPU is freed before the "
            "new pod starts), so the API is down while the new pod loads the model."
        )
    return out


def check(c: StackConfig, stack: str) -> tuple[list[str], list[str]]:
    errors = [p for rule in RULES for p in rule(c)]
    errors += [p for rule in STACK_RULES for p in rule(c, stack)]
    return errors, warnings(c, stack)
