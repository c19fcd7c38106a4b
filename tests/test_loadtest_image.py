"""make loadtest-image (tools/loadtest_image.py) and image/loadtest/Dockerfile: AIPerf and the
tokenizer inside one image, built by the stack's builder and deployed by digest."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from core.config import Image
from core.image import IMAGE_DIR
from core.image import content_tag as server_tag
from tests.conftest import ROOT
from tools import loadtest_image

DOCKERFILE = ROOT / loadtest_image.DOCKERFILE


def test_acr_builds_in_the_registry_and_reads_the_digest_of_its_content_tag():
    steps = loadtest_image.commands("acr", "llamacppdevab12.azurecr.io", "aiperf-0123456789ab")
    assert steps[0][:3] == ["az", "acr", "build"]
    assert steps[0][steps[0].index("--file") + 1] == loadtest_image.DOCKERFILE and steps[0][-1] == "."
    assert "llamacpp-loadtest:aiperf-0123456789ab" in steps[0] and "--registry" in steps[0]
    assert steps[-1][:4] == ["az", "acr", "repository", "show"] and "digest" in steps[-1]


def test_local_builds_with_docker_pushes_and_reads_the_pushed_digest():
    steps = loadtest_image.commands("local", "llamacppdevab12.azurecr.io", "aiperf-0123456789ab")
    assert [s[:2] for s in steps] == [["az", "acr"], ["docker", "build"], ["docker", "push"], ["docker", "image"]]
    assert "llamacppdevab12.azurecr.io/llamacpp-loadtest:aiperf-0123456789ab" in steps[2]


def test_the_printed_digest_becomes_a_reference_and_anything_else_is_refused():
    digest = "sha256:" + "cd" * 32
    assert loadtest_image.digest_ref("r.azurecr.io", digest + "\n") == f"r.azurecr.io/llamacpp-loadtest@{digest}"
    assert loadtest_image.digest_ref("r.azurecr.io", f"r.azurecr.io/llamacpp-loadtest@{digest}").endswith(digest)
    with pytest.raises(SystemExit, match="instead of an image digest"):
        loadtest_image.digest_ref("r.azurecr.io", "ERROR: unauthorized")


def test_the_tag_follows_the_lock_file_and_the_dockerfile(tmp_path: Path):
    for name in loadtest_image.INPUTS:
        source = ROOT / name
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    before = loadtest_image.content_tag(tmp_path)
    assert before == loadtest_image.content_tag()
    (tmp_path / "requirements-aiperf.lock.txt").write_text("changed\n")
    assert loadtest_image.content_tag(tmp_path) != before


def test_the_server_images_tag_ignores_the_load_test_image(tmp_path: Path):
    """A change to the load-test image must not rebuild the CUDA server image (about an hour)."""
    shutil.copytree(IMAGE_DIR, tmp_path / "image", ignore=shutil.ignore_patterns("loadtest"))
    assert server_tag(Image(), tmp_path / "image") == server_tag(Image())


def test_the_build_context_admits_only_what_the_dockerfile_copies():
    copied = set(re.findall(r"^COPY (\S+) ", DOCKERFILE.read_text(), flags=re.MULTILINE))
    admitted = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    assert copied <= admitted and admitted <= copied | {"image/loadtest"}


def test_the_image_holds_aiperf_from_the_lock_and_the_tokenizer_at_a_commit():
    text = DOCKERFILE.read_text()
    assert "--require-hashes" in text and "requirements-aiperf.lock.txt" in text
    assert re.search(r"^ARG VOCABULARY_REVISION=[0-9a-f]{40}$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim@\$\{PYTHON_DIGEST\}$", text, flags=re.MULTILINE)
    assert re.search(r"^ARG PYTHON_DIGEST=sha256:[0-9a-f]{64}$", text, flags=re.MULTILINE)
    assert "/opt/tokenizer" in text and "HF_HUB_OFFLINE=1" in text
