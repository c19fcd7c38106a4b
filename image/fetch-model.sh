#!/bin/sh
# Puts one model file into the model volume, safely and at most once.
#
# usage: fetch-model.sh URL DEST [SHA256]
#   - DEST present and already verified: nothing is downloaded (a restart costs no traffic).
#   - DEST missing: download to DEST.part, resuming a partial file; verify; rename into place.
#   - SHA256 empty: the first download's digest is recorded in DEST.sha256 and checked on every
#     later start, so a file that changes on disk is caught.
#   - HF_TOKEN_FILE (optional): a file holding a Hugging Face token; sent only when set and not
#     empty, through a header file so it never shows in the process list.
# A file at DEST has always passed its check: a bad or partial download never sits where the
# server loads it.
set -eu

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 URL DEST [SHA256]" >&2
  exit 2
fi
url=$1
dest=$2
want=${3:-}
part="$dest.part"
record="$dest.sha256"
name=$(basename "$dest")

log() { echo "fetch-model: $name: $*" >&2; }
digest_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ]; then
  recorded=$(cat "$record" 2>/dev/null || true)
  if [ -n "$want" ] && [ "$recorded" = "$want" ]; then
    log "present and verified ($want); nothing to download"
    exit 0
  fi
  expected=${want:-$recorded}
  if [ -n "$expected" ]; then
    log "present; checking its sha256 against $expected"
    actual=$(digest_of "$dest")
    if [ "$actual" = "$expected" ]; then
      printf '%s\n' "$actual" >"$record.tmp" && mv -f "$record.tmp" "$record"
      log "present and verified; nothing to download"
      exit 0
    fi
    log "sha256 is $actual, not $expected: downloading it again"
    rm -f "$dest" "$record"
  else
    log "present without a recorded digest: recording $(digest_of "$dest" | tee "$record.tmp")"
    mv -f "$record.tmp" "$record"
    exit 0
  fi
fi

headers=$(mktemp)
trap 'rm -f "$headers"' EXIT
if [ -n "${HF_TOKEN_FILE:-}" ] && [ -s "$HF_TOKEN_FILE" ]; then
  printf 'Authorization: Bearer %s\n' "$(cat "$HF_TOKEN_FILE")" >"$headers"
fi

if [ -f "$part" ]; then
  log "resuming from $(wc -c <"$part") bytes"
fi
status=0
curl --fail --location --silent --show-error --retry 5 --retry-delay 5 --retry-connrefused \
  --header "@$headers" --continue-at - --output "$part" "$url" || status=$?
if [ "$status" -eq 33 ] || [ "$status" -eq 36 ]; then
  # The server cannot resume (no byte ranges): start over.
  log "server cannot resume; downloading from the start"
  rm -f "$part"
  curl --fail --location --silent --show-error --retry 5 --retry-delay 5 --retry-connrefused \
    --header "@$headers" --output "$part" "$url" || status=$?
  [ "$status" -eq 33 ] || [ "$status" -eq 36 ] && status=0
fi
if [ "$status" -ne 0 ]; then
  log "download failed (curl exit $status); the partial file stays for the next try to resume"
  exit 1
fi

actual=$(digest_of "$part")
if [ -n "$want" ] && [ "$actual" != "$want" ]; then
  rm -f "$part"
  log "sha256 mismatch: got $actual, expected $want; the download was deleted and nothing was put in place"
  exit 1
fi
printf '%s\n' "$actual" >"$record.tmp"
mv -f "$record.tmp" "$record"
mv -f "$part" "$dest"
log "downloaded and verified ($actual)"
