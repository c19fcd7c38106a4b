#!/usr/bin/env bash
# Builds llama-server from a llama.cpp source tree: one static, relocatable binary.
# The image (CUDA on) and the end-to-end test (CUDA off) both build through this script,
# so the server that is tested is compiled with the flags of the server that ships.
#
# usage: build-llama-server.sh SOURCE_DIR OUTPUT_DIR
# environment:
#   LLAMA_RELEASE         release tag, recorded in the binary's --version (e.g. b11434)
#   GGML_CUDA             ON or OFF (default OFF)
#   CUDA_ARCHITECTURES    CMake CUDA architectures when GGML_CUDA=ON (default 86, the A10)
#   LLAMA_OPENSSL         ON lets the server fetch https image URLs (default ON)
#   GGML_RPC              ON also builds ggml-rpc-server beside llama-server (default OFF): each
#                         rpc-server is one device, so CPU tests can split a model as over GPUs
#   BUILD_DIR             where CMake builds (default: OUTPUT_DIR/build)
#   JOBS                  parallel compile jobs (default: number of cores)
#   EXTRA_CMAKE_ARGS      appended as-is, for toolchain locations (CUDAToolkit_ROOT, ...)
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 SOURCE_DIR OUTPUT_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
build_dir=${BUILD_DIR:-$out/build}
release=${LLAMA_RELEASE:?set LLAMA_RELEASE to the llama.cpp release tag, e.g. b11434}
cuda=${GGML_CUDA:-OFF}
jobs=${JOBS:-$(nproc)}

cmake_args=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_OPENSSL="${LLAMA_OPENSSL:-ON}"
  -DLLAMA_BUILD_NUMBER="${release#b}"
  -DLLAMA_BUILD_COMMIT="$release"
  # Portable CPU code: the binary must run on any x86-64 node, not only the build machine.
  -DGGML_NATIVE=OFF
  -DGGML_CUDA="$cuda"
  -DGGML_RPC="${GGML_RPC:-OFF}"
)
if [ "$cuda" = "ON" ]; then
  cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-86}")
fi
if [ -n "${EXTRA_CMAKE_ARGS:-}" ]; then
  read -r -a extra <<<"$EXTRA_CMAKE_ARGS"
  cmake_args+=("${extra[@]}")
fi

cmake -S "$src" -B "$build_dir" "${cmake_args[@]}"
targets=(llama-server)
[ "${GGML_RPC:-OFF}" = "ON" ] && targets+=(ggml-rpc-server)
cmake --build "$build_dir" --config Release --target "${targets[@]}" -j "$jobs"
install -m 0755 "$build_dir/bin/llama-server" "$out/llama-server"
if [ "${GGML_RPC:-OFF}" = "ON" ]; then
  install -m 0755 "$build_dir/bin/ggml-rpc-server" "$out/ggml-rpc-server"
fi
echo "built $out/llama-server ($release, GGML_CUDA=$cuda)"
