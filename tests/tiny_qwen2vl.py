"""A tiny random Qwen2-VL, written straight to GGUF with gguf-py: no download, no torch.

The metadata keys, tensor names and shapes are those llama.cpp's converter emits for Qwen2-VL
(conversion/qwenvl.py, src/models/qwen2vl.cpp, tools/mtmd/clip.cpp of the pinned release): a
`qwen2vl` text model with M-RoPE and a `qwen2vl_merger` vision tower (14 px patches, a two-frame
patch embedding, 2x2 merge, an MLP projector). The weights are noise, so the text it writes is
noise; the token accounting, context limits and API behaviour are the real server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Sizes: small enough to load in well under a second, large enough to be a real transformer.
# Head size 16 (64 / 4): below the 32-element block of q8_0 and q4_0, so no quantized KV cache
# starts on it with flash attention; TEXT_HEAD32 (64 / 2) is the variant on which they run.
# TEXT_KEYS16 has one KV head of 16, so a layer's keys are not even one whole block.
TEXT = {"embd": 64, "ff": 128, "layers": 2, "heads": 4, "kv_heads": 2}
TEXT_HEAD32 = {"embd": 64, "ff": 128, "layers": 2, "heads": 2, "kv_heads": 1}
TEXT_KEYS16 = {"embd": 32, "ff": 64, "layers": 2, "heads": 2, "kv_heads": 1}
VISION = {"embd": 32, "ff": 64, "layers": 3, "heads": 2, "patch": 14, "image_size": 560}
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModel:
    text: Path
    mmproj: Path
    max_context: int
    shape: dict[str, int]  # TEXT, TEXT_HEAD32 or TEXT_KEYS16

    @property
    def head_dim(self) -> int:
        return self.shape["embd"] // self.shape["heads"]


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 base tokens of a byte-level BPE vocabulary."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    table = dict(zip(printable, chars, strict=True))
    return [chr(table[b]) for b in range(256)]


def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Tokens, their types (1 normal, 3 control) and BPE merges: bytes, a few merges, specials."""
    tokens = byte_tokens()
    merges = ["Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t"]
    tokens += ["".join(m.split()) for m in merges]
    types = [1] * len(tokens)
    tokens += SPECIAL_TOKENS
    types += [3] * len(SPECIAL_TOKENS)
    return tokens, types, merges


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def write_text_model(gguf, path: Path, max_context: int, rng: np.random.Generator, t: dict[str, int]) -> None:
    head_dim = t["embd"] // t["heads"]
    half = head_dim // 2
    tokens, types, merges = vocabulary()
    w = gguf.GGUFWriter(str(path), "qwen2vl")
    w.add_name("tiny-qwen2-vl-test")
    w.add_context_length(max_context)
    w.add_embedding_length(t["embd"])
    w.add_block_count(t["layers"])
    w.add_feed_forward_length(t["ff"])
    w.add_head_count(t["heads"])
    w.add_head_count_kv(t["kv_heads"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    # M-RoPE sections (temporal, height, width, unused) sum to head_dim / 2 in Qwen2-VL's
    # proportions ([16, 24, 24] of 64).
    w.add_rope_dimension_sections([half // 4, half * 3 // 8, half * 3 // 8, 0])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    n_vocab, embd, kv = len(tokens), t["embd"], t["kv_heads"] * head_dim
    w.add_tensor("token_embd.weight", _rand(rng, n_vocab, embd))
    w.add_tensor("output_norm.weight", np.ones(embd, dtype=np.float32))
    w.add_tensor("output.weight", _rand(rng, n_vocab, embd))
    for i in range(t["layers"]):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(embd, dtype=np.float32))
        w.add_tensor(f"{p}.attn_q.weight", _rand(rng, embd, embd))
        w.add_tensor(f"{p}.attn_q.bias", _rand(rng, embd))
        w.add_tensor(f"{p}.attn_k.weight", _rand(rng, kv, embd))
        w.add_tensor(f"{p}.attn_k.bias", _rand(rng, kv))
        w.add_tensor(f"{p}.attn_v.weight", _rand(rng, kv, embd))
        w.add_tensor(f"{p}.attn_v.bias", _rand(rng, kv))
        w.add_tensor(f"{p}.attn_output.weight", _rand(rng, embd, embd))
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(embd, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_gate.weight", _rand(rng, t["ff"], embd))
        w.add_tensor(f"{p}.ffn_up.weight", _rand(rng, t["ff"], embd))
        w.add_tensor(f"{p}.ffn_down.weight", _rand(rng, embd, t["ff"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_mmproj(gguf, path: Path, rng: np.random.Generator, text_embd: int) -> None:
    v = VISION
    e, merged = v["embd"], v["embd"] * 4
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name("tiny-qwen2-vl-test-mmproj")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type("qwen2vl_merger")
    w.add_vision_projection_dim(text_embd)
    w.add_vision_image_size(v["image_size"])
    w.add_vision_patch_size(v["patch"])
    w.add_vision_embedding_length(e)
    w.add_vision_feed_forward_length(v["ff"])
    w.add_vision_block_count(v["layers"])
    w.add_vision_head_count(v["heads"])
    w.add_vision_attention_layernorm_eps(1e-6)
    w.add_vision_image_mean([0.48145466, 0.4578275, 0.40821073])
    w.add_vision_image_std([0.26862954, 0.26130258, 0.27577711])
    # Conv3D (temporal 2) split into two Conv2D kernels, as the converter does.
    w.add_tensor("v.patch_embd.weight", _rand(rng, e, 3, v["patch"], v["patch"]))
    w.add_tensor("v.patch_embd.weight.1", _rand(rng, e, 3, v["patch"], v["patch"]))
    for i in range(v["layers"]):
        p = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{p}.{name}.weight", _rand(rng, e, e))
            w.add_tensor(f"{p}.{name}.bias", _rand(rng, e))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{p}.{name}.weight", np.ones(e, dtype=np.float32))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(e, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_up.weight", _rand(rng, v["ff"], e))
        w.add_tensor(f"{p}.ffn_up.bias", _rand(rng, v["ff"]))
        w.add_tensor(f"{p}.ffn_down.weight", _rand(rng, e, v["ff"]))
        w.add_tensor(f"{p}.ffn_down.bias", _rand(rng, e))
    w.add_tensor("v.post_ln.weight", np.ones(e, dtype=np.float32))
    w.add_tensor("v.post_ln.bias", np.zeros(e, dtype=np.float32))
    w.add_tensor("mm.0.weight", _rand(rng, merged, merged))
    w.add_tensor("mm.0.bias", _rand(rng, merged))
    w.add_tensor("mm.2.weight", _rand(rng, text_embd, merged))
    w.add_tensor("mm.2.bias", _rand(rng, text_embd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_qwen2vl(
    gguf, directory: Path, max_context: int = 4096, seed: int = 0, shape: dict[str, int] = TEXT
) -> TinyModel:
    """Writes the model and its projector into `directory`; `gguf` is the gguf-py module to use."""
    rng = np.random.default_rng(seed)
    model = TinyModel(
        directory / "tiny-qwen2-vl.gguf", directory / "mmproj-tiny-qwen2-vl.gguf", max_context, dict(shape)
    )
    write_text_model(gguf, model.text, max_context, rng, model.shape)
    write_mmproj(gguf, model.mmproj, rng, model.shape["embd"])
    return model
