"""Fills in a stack's model block from the source, to paste into Pulumi.<stack>.yaml: the commit,
each file's size and sha256 from the Hugging Face API, and the family and shape from the text
model's GGUF header (read from the first bytes of the file, never the whole file).

usage: python -m tools.model_block --repo owner/name --file model.gguf --mmproj mmproj.gguf [--revision main]
(`make model REPO= FILE= MMPROJ=`). HF_ENDPOINT points it at another hub; HF_TOKEN signs in.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from core.catalog import VISION_FAMILIES
from core.config import PROJECT, ModelFiles, shown

HEADER_START_BYTES = 1024 * 1024
# A GGUF header holds the tokenizer (Qwen2-VL's 152k tokens and merges: about 10 MB); no header
# of a model this stack serves comes near this.
HEADER_MAX_BYTES = 128 * 1024 * 1024


class SourceProblem(Exception):
    """One sentence about the source: what could not be read, and what to do."""


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def file_pins(repo: str, revision: str, files: list[str]) -> tuple[str, dict[str, tuple[int, str]]]:
    """The commit `revision` names, and (size, sha256) of each file at that commit (its LFS pointer)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi(endpoint=_endpoint()).model_info(repo, revision=revision, files_metadata=True)
    except (HfHubHTTPError, httpx.HTTPError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SourceProblem(
            f"{repo}@{revision} could not be read from {_endpoint()} ({shown(first)}); check the repo, the "
            f"revision and the network (HF_TOKEN for a gated repo)."
        ) from None
    siblings = {s.rfilename: s for s in info.siblings or []}
    pins = {}
    for name in files:
        sibling = siblings.get(name)
        if sibling is None:
            raise SourceProblem(
                f"{repo}@{revision} has no file {shown(name)}; its .gguf files: "
                f"{', '.join(sorted(n for n in siblings if n.endswith('.gguf'))) or 'none'}."
            )
        if sibling.lfs is None or sibling.size is None:
            raise SourceProblem(f"{repo}/{name} has no LFS size and sha256 on the hub; it is not a model file.")
        pins[name] = (sibling.size, sibling.lfs.sha256)
    if not info.sha:
        raise SourceProblem(f"{repo}@{revision} did not name its commit; pass --revision with a 40-digit commit.")
    return info.sha, pins


def _metadata(path: Path) -> dict[str, Any]:
    """gguf's reader stopped after the key-value metadata: the tensor index and data are not read."""
    import gguf

    class MetadataReader(gguf.GGUFReader):
        def _build_tensor_info(self, offs: int, count: int) -> tuple[int, list[Any]]:
            return offs, []

        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            return None

    return {name: field.contents() for name, field in MetadataReader(path).fields.items()}


def gguf_header(repo: str, commit: str, file: str) -> dict[str, Any]:
    """The metadata of a GGUF file on the hub, from as few of its first bytes as hold it."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    url = hf_hub_url(repo, file, revision=commit, endpoint=_endpoint())
    size = HEADER_START_BYTES
    while True:
        headers = {**build_hf_headers(), "Range": f"bytes=0-{size - 1}"}
        try:
            response = get_session().get(url, headers=headers, follow_redirects=True)
        except httpx.HTTPError as err:
            raise SourceProblem(f"{url} could not be read ({type(err).__name__}); check the network.") from None
        if response.status_code not in (200, 206):
            raise SourceProblem(f"{url} answered HTTP {response.status_code}; check the file name and revision.")
        data = response.content[:size]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "header.gguf"
            path.write_bytes(data)
            try:
                return _metadata(path)
            except (IndexError, ValueError) as err:
                if len(data) < size:  # the whole file was read: it is not a GGUF file
                    raise SourceProblem(f"{repo}/{file} is not a GGUF file this reader understands ({err}).") from None
        if size >= HEADER_MAX_BYTES:
            raise SourceProblem(
                f"{repo}/{file} has a GGUF header over {HEADER_MAX_BYTES} bytes; it is not a model here."
            )
        size *= 4


def architecture_of(header: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """(family, model.architecture) from a text model's GGUF header (llama.cpp's key names)."""
    family = str(header.get("general.architecture", ""))
    key = f"{family}.%s"
    try:
        heads = int(header[key % "attention.head_count"])
        hidden = int(header[key % "embedding_length"])
        arch = {
            "layers": int(header[key % "block_count"]),
            "kvHeads": int(header.get(key % "attention.head_count_kv", heads)),
            "headDim": int(header.get(key % "attention.key_length", hidden // heads)),
            "maxContext": int(header[key % "context_length"]),
            "vocab": len(header["tokenizer.ggml.tokens"]),
            "hidden": hidden,
        }
    except KeyError as err:
        raise SourceProblem(
            f"the GGUF header of family {shown(family)} lacks {err.args[0]}; is this the text model, not the mmproj?"
        ) from None
    return family, arch


def model_block(repo: str, file: str, mmproj: str, revision: str) -> dict[str, Any]:
    """The `model` config of this source, keys as the stack file spells them."""
    commit, pins = file_pins(repo, revision, [file, mmproj])
    family, arch = architecture_of(gguf_header(repo, commit, file))
    (size, sha), (mmproj_size, mmproj_sha) = pins[file], pins[mmproj]
    block = {
        "repo": repo,
        "revision": commit,
        "file": file,
        "sha256": sha,
        "sizeBytes": size,
        "mmprojFile": mmproj,
        "mmprojSha256": mmproj_sha,
        "mmprojSizeBytes": mmproj_size,
        "family": family,
        "architecture": arch,
    }
    try:
        ModelFiles.model_validate(block)  # names and digests of the form the stack accepts
    except ValidationError as err:
        raise SourceProblem(
            f"the hub's answer is not a model block this stack accepts: {err.errors()[0]['msg']}."
        ) from None
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--mmproj", required=True)
    parser.add_argument("--revision", default="main")
    args = parser.parse_args(argv)
    try:
        block = model_block(args.repo, args.file, args.mmproj, args.revision)
    except SourceProblem as err:
        print(f"make model: {err}", file=sys.stderr)
        return 1
    if block["family"] not in VISION_FAMILIES:
        print(
            f"make model: model.family={block['family']} has no image arithmetic here (core/catalog.py "
            f"VISION_FAMILIES); preview will refuse it until that is added.",
            file=sys.stderr,
        )
    print(f"# paste into Pulumi.<stack>.yaml under config: (replaces the {PROJECT}:model block; keep its storage)")
    print(yaml.safe_dump({f"{PROJECT}:model": block}, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
