"""Reads the sha256 of upstream's CUDA Linux tarball of a llama.cpp release from GitHub's release
API, for image.llamaCppReleaseSha256 (image.llamaServerFrom=release).

GitHub lists each release asset with a `digest` ("sha256:<hex>") it computed at upload
(docs.github.com/rest/releases/releases#get-a-release-by-tag-name; github.blog changelog
2025-06-03, "Releases now expose digests for release assets"); an asset uploaded before then has
`digest: null`, and this tool then refuses rather than hash a download it cannot vouch for.

usage: python -m tools.release_pin [RELEASE] [--cuda 12.8.1]   (defaults: the stack's pins)
environment: GITHUB_API (default https://api.github.com), GITHUB_TOKEN (optional, raises the rate limit)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Any

from core.config import Image
from core.image import release_asset

GITHUB_API = "https://api.github.com"
REPOSITORY = "ggml-org/llama.cpp"


class PinError(Exception):
    """A sentence saying why no pin could be read."""


def release(api: str, tag: str, token: str = "") -> dict[str, Any]:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{api}/repos/{REPOSITORY}/releases/tags/{tag}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise PinError(f"{REPOSITORY} has no release {tag}; check image.llamaCppRelease") from None
        if err.code in (403, 429):
            raise PinError(
                f"GitHub refused the request ({err.code}, rate limit?); set GITHUB_TOKEN and retry"
            ) from None
        raise PinError(f"GitHub answered {err.code} for {url}") from None
    except (urllib.error.URLError, OSError) as err:
        raise PinError(f"GitHub's API could not be reached at {api} ({err}); run this where it can") from None


def asset_sha256(data: dict[str, Any], name: str) -> str:
    """The hex sha256 of asset `name` (exact name, GitHub's digest), or a PinError saying why not."""
    assets = [a for a in data.get("assets") or [] if a.get("name") == name]
    if not assets:
        names = ", ".join(sorted(str(a.get("name")) for a in data.get("assets") or [])) or "none"
        raise PinError(f"release {data.get('tag_name')} has no asset {name} (it has: {names})")
    digest = assets[0].get("digest") or ""
    match = re.fullmatch(r"sha256:([0-9a-f]{64})", digest)
    if not match:
        raise PinError(f"GitHub lists no sha256 digest for {name} (digest: {digest or 'null'}); do not pin a guess")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    defaults = Image()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", nargs="?", default=defaults.llama_cpp_release)
    parser.add_argument("--cuda", default=defaults.cuda_version, help="the image's CUDA version (asset name)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"b[0-9]+", args.release):
        print(f"release={args.release!r} is not a llama.cpp release tag; pass one like b11434", file=sys.stderr)
        return 2
    name = release_asset(args.release, args.cuda)
    try:
        data = release(
            os.environ.get("GITHUB_API", GITHUB_API).rstrip("/"), args.release, os.environ.get("GITHUB_TOKEN", "")
        )
        sha = asset_sha256(data, name)
    except PinError as err:
        print(f"no pin for {name}: {err}", file=sys.stderr)
        return 1
    print("image:")
    print("  llamaServerFrom: release")
    print(f"  llamaCppRelease: {args.release}")
    print(f"  llamaCppReleaseSha256: {sha}  # {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
