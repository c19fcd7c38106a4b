#!/usr/bin/env bash
# Puts upstream's prebuilt llama-server of one release, with the ggml/llama libraries beside it,
# into OUTPUT_DIR: downloads the release tarball, checks it against the pinned sha256, and
# unpacks only the directory that holds llama-server. No compiler, no source tree.
#
# usage: fetch-llama-release.sh URL SHA256 OUTPUT_DIR
#   URL      the release asset, e.g. .../releases/download/b11434/llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz
#            (GitHub answers with a redirect to its asset host: followed)
#   SHA256   64 hex digits, the asset's digest (python -m tools.release_pin reads it)
# The binaries find their libraries through RUNPATH $ORIGIN, so they stay together in OUTPUT_DIR.
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 URL SHA256 OUTPUT_DIR" >&2
  exit 2
fi
url=$1 sha=$2 out=$3
if ! [[ "$sha" =~ ^[0-9a-f]{64}$ ]]; then
  echo "the release tarball's sha256 is '$sha', not 64 lowercase hex digits; set image.llamaCppReleaseSha256 (python -m tools.release_pin prints it)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

curl -q -fsSL --retry 3 --proto '=https,http' -o "$work/release.tar.gz" "$url"
echo "$sha  $work/release.tar.gz" | sha256sum -c --quiet - || {
  echo "$url does not match the pinned sha256 $sha; refusing it" >&2
  exit 1
}
# Only relative member names: a tarball that writes outside the directory is refused whole. The
# listing goes to a file first: `grep -q` would stop at the first match, tar would die of SIGPIPE,
# and with pipefail the test would read as "no such member".
tar -tzf "$work/release.tar.gz" >"$work/members"
if grep -Eq '(^/|(^|/)\.\.(/|$))' "$work/members"; then
  echo "$url holds a member with an absolute path or '..'; refusing it" >&2
  exit 1
fi
mkdir -p "$work/x"
tar -xzf "$work/release.tar.gz" -C "$work/x" --no-same-owner --no-same-permissions
mapfile -t servers < <(find "$work/x" -type f -name llama-server)
if [ "${#servers[@]}" -ne 1 ]; then
  echo "$url holds ${#servers[@]} files named llama-server, expected exactly one" >&2
  exit 1
fi
bin_dir=$(dirname "${servers[0]}")
mkdir -p "$out"
install -m 0755 "${servers[0]}" "$out/llama-server"
# The shared libraries it loads (libggml*, libllama, libmtmd), links kept as links.
find "$bin_dir" -maxdepth 1 -name 'lib*.so*' -exec cp -P -t "$out" {} +
echo "unpacked llama-server and $(find "$out" -maxdepth 1 -name 'lib*.so*' | wc -l) libraries into $out"
