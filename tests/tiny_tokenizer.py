"""The tiny Qwen2-VL's vocabulary (tests/tiny_qwen2vl.py) as a Hugging Face tokenizer.json, so a
benchmark tool that sizes its prompts with a tokenizer counts tokens as the tiny model does,
with no download."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_qwen2vl import vocabulary


def write_tokenizer(directory: Path) -> Path:
    """A byte-level BPE tokenizer.json (Hugging Face `tokenizers` format) and its config; returns the folder."""
    tokens, types, merges = vocabulary()
    special = [(i, t) for i, (t, kind) in enumerate(zip(tokens, types, strict=True)) if kind == 3]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in special
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {t: i for i, (t, kind) in enumerate(zip(tokens, types, strict=True)) if kind != 3},
            "merges": merges,
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(doc))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "bos_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory
