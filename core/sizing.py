"""Pure arithmetic of serving a GGUF model: KV cache, VRAM, tokens per slot, image tokens, node fit.

No Pulumi imports: the validator, the render's summary and the docs all call these functions.
The formulas follow the pinned llama.cpp release; each one names the code it mirrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.catalog import (
    CUDA_CONTEXT_BYTES,
    KV_CACHE_TYPE_BYTES,
    LLAMA_CTX_PAD,
    NODE_ALLOCATABLE_FRACTION,
    QWEN2VL_IMAGE_MIN_TOKENS,
    QWEN2VL_VISION,
    GpuVmSize,
    VisionArithmetic,
)


@dataclass(frozen=True)
class ModelShape:
    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    vocab: int
    hidden: int
    output_weight_bytes: float = 2.0  # bytes per element of the output matrix (f16 bounds a quantized file)


def pad_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_context(context: int) -> int:
    """-c as llama.cpp uses it: GGML_PAD(n_ctx, 256) in llama-context.cpp."""
    return pad_up(context, LLAMA_CTX_PAD)


def context_per_sequence(context: int, parallel: int, kv_unified: bool) -> int:
    """Context llama.cpp gives each sequence (slot) before the training-context cap.

    llama-context.cpp: n_ctx = GGML_PAD(C, 256); n_ctx_seq = n_ctx with a unified KV cache, else
    GGML_PAD(n_ctx / N, 256).
    """
    n_ctx = padded_context(context)
    return n_ctx if kv_unified else pad_up(n_ctx // parallel, LLAMA_CTX_PAD)


def tokens_per_slot(context: int, parallel: int, kv_unified: bool, max_context: int) -> int:
    """Context one request can use, as llama-server computes it: server-context.cpp n_ctx_slot()
    is min(n_ctx_seq, n_ctx_train)."""
    return min(context_per_sequence(context, parallel, kv_unified), max_context)


def allocated_context(context: int, parallel: int, kv_unified: bool) -> int:
    """Total KV cells llama.cpp allocates: N slots of the padded per-slot size, or padded C if unified."""
    per_sequence = context_per_sequence(context, parallel, kv_unified)
    return per_sequence if kv_unified else per_sequence * parallel


def kv_cache_bytes(shape: ModelShape, cells: int, type_k: str, type_v: str) -> int:
    """2 (K and V) x layers x KV heads x head size x bytes per element x cells, split per tensor type."""
    per_cell_elems = shape.layers * shape.kv_heads * shape.head_dim
    bytes_k = per_cell_elems * KV_CACHE_TYPE_BYTES[type_k]
    bytes_v = per_cell_elems * KV_CACHE_TYPE_BYTES[type_v]
    return round((bytes_k + bytes_v) * cells)


def compute_reserve_bytes(shape: ModelShape, ubatch: int) -> int:
    """GPU buffers beside weights and KV: the CUDA context plus the per-ubatch compute graph.

    The graph is dominated by the f32 logits of one ubatch (ubatch x vocab) and the f32 activations
    (ubatch x 4 x hidden). Checked against the reference deployment (8.4 GB measured) in the tests.
    """
    graph = ubatch * (shape.vocab + 4 * shape.hidden) * 4
    return CUDA_CONTEXT_BYTES + graph


@dataclass(frozen=True)
class VramEstimate:
    weights_bytes: int
    mmproj_bytes: int
    kv_bytes: int
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.mmproj_bytes + self.kv_bytes + self.compute_bytes


def vram_estimate(
    shape: ModelShape,
    weights_file_bytes: int,
    mmproj_file_bytes: int,
    gpu_layers: int,
    cells: int,
    type_k: str,
    type_v: str,
    ubatch: int,
) -> VramEstimate:
    """GPU memory of one server: offloaded share of the weights, projector, KV cache, compute.

    With -ngl below the layer count, only that share of the weights and KV lives on the GPU.
    """
    on_gpu = min(gpu_layers, shape.layers) / shape.layers
    return VramEstimate(
        weights_bytes=round(weights_file_bytes * on_gpu),
        mmproj_bytes=mmproj_file_bytes,
        kv_bytes=round(kv_cache_bytes(shape, cells, type_k, type_v) * on_gpu),
        compute_bytes=compute_reserve_bytes(shape, ubatch),
    )


def usable_gpu_bytes(vm: GpuVmSize, headroom: float) -> int:
    return round(vm.gpu_memory_gb * 1e9 * (1 - headroom))


def image_grid(
    width: int, height: int, min_tokens: int, max_tokens: int, vision: VisionArithmetic = QWEN2VL_VISION
) -> tuple[int, int]:
    """Resized image size for Qwen2-VL: Qwen's smart_resize (mtmd-image.cpp calc_size_preserved_ratio)."""
    side = vision.pixels_per_token_side
    min_pixels = min_tokens * side * side
    max_pixels = max_tokens * side * side
    w_bar = max(side, round(width / side) * side)
    h_bar = max(side, round(height / side) * side)
    if w_bar * h_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(side, math.floor(height / beta / side) * side)
        w_bar = max(side, math.floor(width / beta / side) * side)
    elif w_bar * h_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / side) * side
        w_bar = math.ceil(width * beta / side) * side
    return w_bar, h_bar


def tokens_per_image(
    width: int,
    height: int,
    max_tokens: int,
    min_tokens: int = QWEN2VL_IMAGE_MIN_TOKENS,
    vision: VisionArithmetic = QWEN2VL_VISION,
) -> int:
    """Prompt tokens one image adds: one per side x side px of the resized image, plus the markers."""
    w_bar, h_bar = image_grid(width, height, min_tokens, max_tokens, vision)
    side = vision.pixels_per_token_side
    return (w_bar // side) * (h_bar // side) + vision.marker_tokens


def worst_case_image_tokens(max_tokens: int, vision: VisionArithmetic = QWEN2VL_VISION) -> int:
    return max_tokens + vision.marker_tokens


def worst_case_request_tokens(
    images: int, image_max_tokens: int, prompt: int, output: int, vision: VisionArithmetic = QWEN2VL_VISION
) -> int:
    """Tokens one request may hold in its slot: every image at its cap, the prompt and the answer."""
    return images * worst_case_image_tokens(image_max_tokens, vision) + prompt + output


# --- what a public endpoint must let through ------------------------------------------------
# An image at its token cap, sent the way OpenAI clients send it: 24-bit pixels stored without
# compression (the worst a PNG can be; a photo's JPEG is far smaller), as base64 in the JSON body.
IMAGE_BYTES_PER_PIXEL = 3
IMAGE_FILE_OVERHEAD_BYTES = 64 * 1024  # headers, metadata, PNG filter bytes and chunk framing
BASE64_NUMERATOR, BASE64_DENOMINATOR = 4, 3
# Prompt text in JSON: a token is about 4 characters of English; escaped non-ASCII (\uXXXX)
# takes up to 6 bytes a character, so 32 bytes a token is a ceiling, not an average.
JSON_BYTES_PER_PROMPT_TOKEN = 32
JSON_ENVELOPE_BYTES = 16 * 1024  # the request's keys, sampling settings, role markers
# The slowest generation a caller must still see finish: a floor per slot when every slot is
# busy (an assumption, not a measurement: an A10 decodes Qwen2-VL 7B Q4_K_M faster than this even
# with 8 busy slots), after the prompt and its images are read.
MIN_DECODE_TOKENS_PER_SECOND = 5
PROMPT_ALLOWANCE_SECONDS = 60
# Application Gateway for Containers closes an HTTP stream idle this long, and it cannot be set
# (learn.microsoft.com/azure/application-gateway/for-containers/application-gateway-for-containers-components,
# "Request timeouts": stream idle timeout 5 minutes).
AGC_STREAM_IDLE_TIMEOUT_SECONDS = 300


def image_max_bytes(image_max_tokens: int, vision: VisionArithmetic = QWEN2VL_VISION) -> int:
    """Bytes of the largest image file that still holds no more pixels than the token cap allows."""
    pixels = image_max_tokens * vision.pixels_per_token_side**2
    return pixels * IMAGE_BYTES_PER_PIXEL + IMAGE_FILE_OVERHEAD_BYTES


def request_body_bytes(
    images: int, image_max_tokens: int, prompt_tokens: int, vision: VisionArithmetic = QWEN2VL_VISION
) -> int:
    """Largest chat request body within the request budget: every image at its cap in base64, the prompt as JSON."""
    image = -(-image_max_bytes(image_max_tokens, vision) * BASE64_NUMERATOR // BASE64_DENOMINATOR)
    return images * image + prompt_tokens * JSON_BYTES_PER_PROMPT_TOKEN + JSON_ENVELOPE_BYTES


def request_timeout_seconds(output_tokens: int) -> int:
    """How long a proxy must wait for one whole answer of `output_tokens` at the slowest decode rate."""
    return PROMPT_ALLOWANCE_SECONDS + -(-output_tokens // MIN_DECODE_TOKENS_PER_SECOND)


MAX_PARALLEL = 256


def max_parallel_for(context: int, need: int, max_context: int) -> int:
    """Largest slot count (up to 256) whose per-slot context still holds `need` tokens, 0 if none.

    Padding to 256 can add up to 255 tokens per slot, so slots up to C / (need - 255) may fit.
    """
    upper = min(MAX_PARALLEL, context // max(need - (LLAMA_CTX_PAD - 1), 1) + 1)
    for parallel in range(upper, 0, -1):
        if tokens_per_slot(context, parallel, False, max_context) >= need:
            return parallel
    return 0


def min_context_for(parallel: int, need: int) -> int:
    """Smallest -c that gives every one of `parallel` slots `need` tokens."""
    return pad_up(need, LLAMA_CTX_PAD) * parallel


@dataclass(frozen=True)
class NodeCapacity:
    cpu_millis: int
    memory_bytes: int


def node_allocatable(vm: GpuVmSize) -> NodeCapacity:
    return NodeCapacity(
        cpu_millis=math.floor(vm.vcpus * 1000 * NODE_ALLOCATABLE_FRACTION),
        memory_bytes=math.floor(vm.memory_gib * 1024**3 * NODE_ALLOCATABLE_FRACTION),
    )


def gpu_nodes_for(replicas: int, vm: GpuVmSize, gpus_per_replica: int = 1) -> int:
    """Nodes that `replicas` pods of `gpus_per_replica` GPUs each need: a pod never spans nodes."""
    return -(-replicas // max(vm.gpus // gpus_per_replica, 1))


# --- several GPUs in one replica --------------------------------------------------------------


def layer_devices(layers: int, gpu_layers: int, split: tuple[float, ...]) -> tuple[int | None, ...]:
    """The device of each of `layers` + 1 layers (the last is the output layer); None is the CPU.

    llama-model.cpp load_tensors: the proportions become cumulative split points, layers from
    i_gpu_start = max(L + 1 - ngl, 0) go to the GPUs, and layer i lands on the first device whose
    split point is above (i - i_gpu_start) / act_gpu_layers (std::upper_bound).
    """
    total = sum(split)
    points, running = [], 0.0
    for share in split:
        running += share
        points.append(running / total)
    start = max(layers + 1 - gpu_layers, 0)
    active = min(gpu_layers, layers + 1)
    out: list[int | None] = []
    for il in range(layers + 1):
        if il < start or il - start >= active:
            out.append(None)
            continue
        at = (il - start) / active
        out.append(min(next((i for i, p in enumerate(points) if p > at), len(points)), len(points) - 1))
    return tuple(out)


def output_matrix_bytes(shape: ModelShape) -> int:
    """The output (lm_head) matrix: the device that holds the output layer holds all of it."""
    return round(shape.vocab * shape.hidden * shape.output_weight_bytes)


def vram_per_device(
    shape: ModelShape,
    weights_file_bytes: int,
    mmproj_file_bytes: int,
    gpu_layers: int,
    cells: int,
    type_k: str,
    type_v: str,
    ubatch: int,
    split: tuple[float, ...],
    split_mode: str = "layer",
) -> tuple[VramEstimate, ...]:
    """GPU memory of each device of one server, as llama.cpp places the model over `split`.

    - layer: a device holds its layers' weights and KV cache; the projector sits on the first GPU
      (mtmd's clip takes the first GPU backend); the output layer, with its logits buffer, on the
      last device that has layers. With one device this is `vram_estimate`.
    - tensor: every weight matrix and the KV cache are cut by the proportions; each device keeps
      its own compute buffers.
    """
    if len(split) == 1:
        return (vram_estimate(shape, weights_file_bytes, mmproj_file_bytes, gpu_layers, cells, type_k, type_v, ubatch),)
    kv_total = kv_cache_bytes(shape, cells, type_k, type_v)
    activations = CUDA_CONTEXT_BYTES + ubatch * 4 * shape.hidden * 4
    logits = ubatch * shape.vocab * 4
    if split_mode == "tensor":
        total = sum(split)
        on_gpu = min(gpu_layers, shape.layers) / shape.layers
        return tuple(
            VramEstimate(
                weights_bytes=round(weights_file_bytes * on_gpu * share / total),
                mmproj_bytes=mmproj_file_bytes if i == 0 else 0,
                kv_bytes=round(kv_total * on_gpu * share / total),
                compute_bytes=activations + logits,
            )
            for i, share in enumerate(split)
        )
    devices = layer_devices(shape.layers, gpu_layers, split)
    output_device = devices[-1]
    out = []
    for i in range(len(split)):
        held = sum(1 for d in devices[:-1] if d == i)
        holds_output = output_device == i
        out.append(
            VramEstimate(
                # The file spread by layers, and the output matrix whole where it sits.
                weights_bytes=round(weights_file_bytes * held / shape.layers)
                + (output_matrix_bytes(shape) if holds_output else 0),
                mmproj_bytes=mmproj_file_bytes if i == 0 else 0,
                kv_bytes=round(kv_total * held / shape.layers),
                compute_bytes=(activations if held or holds_output or i == 0 else 0) + (logits if holds_output else 0),
            )
        )
    return tuple(out)
