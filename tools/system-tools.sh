#!/usr/bin/env bash
# The system tools `make test` needs: make, a C++ compiler and cmake (the end-to-end test builds
# llama-server from the pinned release), curl (image/fetch-model.sh) and Python's venv module.
# Installs the missing ones with apt-get when it can (root, or sudo without a password prompt);
# otherwise prints the one command that installs them and exits 3, before any venv is built.
#   SYSTEM_TOOLS_AS=root|sudo|user   overrides the detection (tests pretend to be a plain user)
#   PYTHON                           the interpreter whose venv module is checked (default python3)
set -euo pipefail

PYTHON=${PYTHON:-python3}
# Debian/Ubuntu package of each command.
declare -A PACKAGE=([make]=make [cmake]=cmake [g++]=g++ [curl]=curl)

missing=()
for tool in make cmake g++ curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE[$tool]}")
done
# ensurepip is what Debian splits out of the standard library into python3-venv.
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ "${#missing[@]}" -eq 0 ] && exit 0

as=${SYSTEM_TOOLS_AS:-}
if [ -z "$as" ]; then
  if [ "$EUID" = 0 ]; then
    as=root
  elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as=sudo
  else
    as=user
  fi
fi
install="apt-get update && apt-get install -y ${missing[*]}"

case "$as" in
  root) runner=() ;;
  sudo) runner=(sudo -n) ;;
  *)
    echo "make test needs ${missing[*]} (not found); install them with: sudo sh -c '$install'" >&2
    exit 3
    ;;
esac
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs ${missing[*]} (not found) and there is no apt-get here; install them with your system's package manager." >&2
  exit 3
fi
echo "installing system tools: ${missing[*]}"
"${runner[@]}" apt-get update -qq
"${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
