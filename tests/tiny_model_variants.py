"""Variants of the tiny Qwen2-VL (tests/tiny_qwen2vl.py) with other sizes, written by the same writer.

Quantized KV caches need a head size that is a multiple of the quantization block (32 for q8_0 and
q4_0: ggml's QK8_0 and QK4_0), and the base tiny model has head size 16; the variant here has 32.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from unittest import mock

from core.sizing import ModelShape
from tests import tiny_qwen2vl
from tests.tiny_qwen2vl import TinyModel, vocabulary

# Head size 32 (embd 128 over 4 heads) and room for contexts of tens of thousands of tokens, so
# the KV cache is megabytes and the MiB that llama-server logs with two decimals are precise to 1%.
HEAD32 = {**tiny_qwen2vl.TEXT, "embd": 128, "ff": 512}
HEAD32_MAX_CONTEXT = 32768


def write_head32(gguf: ModuleType, directory: Path) -> TinyModel:
    """The tiny model and its projector with head size 32 (the projector projects to the new width)."""
    with mock.patch.dict(tiny_qwen2vl.TEXT, HEAD32):
        return tiny_qwen2vl.write_tiny_qwen2vl(gguf, directory, max_context=HEAD32_MAX_CONTEXT)


def head32_shape() -> ModelShape:
    t = HEAD32
    return ModelShape(
        layers=t["layers"],
        kv_heads=t["kv_heads"],
        head_dim=t["embd"] // t["heads"],
        max_context=HEAD32_MAX_CONTEXT,
        vocab=len(vocabulary()[0]),
        hidden=t["embd"],
    )
