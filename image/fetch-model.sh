#!/bin/sh
# Puts one model file into the model volume, safely and at most once.
#
# usage: fetch-model.sh URL DEST [SHA256]
#   - One writer per file: a lock beside DEST (flock, util-linux) makes a second fetch of the same
#     file wait, then find it in place; two pods sharing a ReadWriteMany volume download it once.
#   - DEST present: its sha256 is checked against SHA256 on every start (VERIFY_ON_START=0 trusts
#     the DEST.sha256 record written after the last check instead, for a faster restart).
#   - DEST missing or wrong: download to DEST.part, resuming a partial file; verify; rename into place.
#   - SHA256 empty: the first download's digest is recorded in DEST.sha256 and checked on every
#     later start, so a file that changes on disk is caught.
#   - VERIFY_ONLY=1: a check and nothing more (the server pod, which has no egress): a missing or
#     wrong DEST fails with a message and is left as it is; nothing is deleted or downloaded. The
#     one writer is the download Job, which a server pod of another model revision must not undo.
#   - HF_TOKEN_FILE (optional): a file holding a Hugging Face token; sent only when set and not
#     empty. The header goes to curl on a pipe (curl's `-H @-`): it is never written to disk and
#     never shows in a process's argument list.
# Bounds (environment, seconds unless named otherwise), so a dead or stalling server ends the
# fetch with an error instead of holding the pod in Init:
#   FETCH_CONNECT_TIMEOUT=20   per connection attempt (curl --connect-timeout)
#   FETCH_STALL_SECONDS=60     abort a transfer slower than FETCH_STALL_BYTES bytes/s for this long
#   FETCH_STALL_BYTES=1024     (curl --speed-time / --speed-limit); a stall counts as a failed try.
#                              curl averages speed over its last ~5 s, so a stall right after a
#                              fast burst is seen up to ~5 s later (measured on curl 7.88).
#   FETCH_RETRIES=5            further tries after a transient failure, each resuming (curl --retry)
#   FETCH_RETRY_DELAY=5        pause between tries
#   FETCH_TOTAL_SECONDS=7200   the whole download, all tries together (coreutils timeout)
#   FETCH_LOCK_WAIT=7300       how long to wait for another writer of the same file
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
lock="$dest.lock"
name=$(basename "$dest")
connect_timeout=${FETCH_CONNECT_TIMEOUT:-20}
stall_seconds=${FETCH_STALL_SECONDS:-60}
stall_bytes=${FETCH_STALL_BYTES:-1024}
retries=${FETCH_RETRIES:-5}
retry_delay=${FETCH_RETRY_DELAY:-5}
total_seconds=${FETCH_TOTAL_SECONDS:-7200}
lock_wait=${FETCH_LOCK_WAIT:-7300}
verify_on_start=${VERIFY_ON_START:-1}
verify_only=${VERIFY_ONLY:-0}

log() { echo "fetch-model: $name: $*" >&2; }
digest_of() { sha256sum "$1" | cut -d' ' -f1; }
record_digest() { printf '%s\n' "$1" >"$record.tmp" && mv -f "$record.tmp" "$record"; }

child=""
# Runs a command in the background and waits for it, so that a TERM reaches the trap at once
# instead of after the command ends.
run_bg() {
  "$@" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

cleanup() {
  if [ -n "$child" ]; then kill "$child" 2>/dev/null || true; fi
  rm -f "$record.tmp"
}
trap cleanup EXIT
# A pod being stopped sends TERM: stop curl too, and leave (the EXIT trap cleans up).
trap 'log "stopped by a signal; nothing was put in place"; exit 143' TERM INT HUP

if [ "$verify_only" = "1" ]; then
  if [ ! -f "$dest" ]; then
    log "not on the volume: the download Job of this model revision has not put it there; run pulumi up to run that Job (its logs say why it failed)"
    exit 1
  fi
  recorded=$(cat "$record" 2>/dev/null || true)
  expected=${want:-$recorded}
  if [ "$verify_on_start" = "0" ] && [ -n "$expected" ] && [ "$recorded" = "$expected" ]; then
    log "present, recorded as $expected; not re-hashed (VERIFY_ON_START=0)"
    exit 0
  fi
  actual=$(digest_of "$dest")
  if [ -z "$expected" ]; then
    record_digest "$actual"
    log "present without a recorded digest: recorded $actual"
    exit 0
  fi
  if [ "$actual" != "$expected" ]; then
    log "sha256 is $actual, not $expected: not the pinned file (another model revision is being downloaded, or the file is damaged); left in place, and this pod downloads nothing"
    exit 1
  fi
  [ "$recorded" = "$actual" ] || record_digest "$actual"
  log "present and verified"
  exit 0
fi

# One writer per file. The lock is the open file description: the kernel (or the NFS/SMB server)
# releases it when this process dies, so a killed fetch never blocks the next one.
exec 9>"$lock"
if ! flock -n 9; then
  log "another fetch is writing this file; waiting up to ${lock_wait}s for it"
  # The lock belongs to fd 9's open file description, so the parent holds what flock took.
  if ! run_bg flock -w "$lock_wait" 9; then
    log "another fetch still holds $lock after ${lock_wait}s; giving up (raise FETCH_LOCK_WAIT if downloads take longer)"
    exit 1
  fi
fi

if [ -f "$dest" ]; then
  recorded=$(cat "$record" 2>/dev/null || true)
  expected=${want:-$recorded}
  if [ "$verify_on_start" = "0" ] && [ -n "$expected" ] && [ "$recorded" = "$expected" ]; then
    log "present, recorded as $expected; not re-hashed (VERIFY_ON_START=0); nothing to download"
    exit 0
  fi
  if [ -n "$expected" ]; then
    log "present; checking its sha256 against $expected"
    actual=$(digest_of "$dest")
    if [ "$actual" = "$expected" ]; then
      [ "$recorded" = "$actual" ] || record_digest "$actual"
      log "present and verified; nothing to download"
      exit 0
    fi
    log "sha256 is $actual, not $expected: downloading it again"
    rm -f "$dest" "$record"
  else
    actual=$(digest_of "$dest")
    record_digest "$actual"
    log "present without a recorded digest: recorded $actual; nothing to download"
    exit 0
  fi
fi

token=""
if [ -n "${HF_TOKEN_FILE:-}" ] && [ -s "$HF_TOKEN_FILE" ]; then
  token=$(cat "$HF_TOKEN_FILE")
fi
deadline=$(($(date +%s) + total_seconds))

# One curl run with its own retries, bounded by what is left of FETCH_TOTAL_SECONDS.
get() {
  left=$((deadline - $(date +%s)))
  [ "$left" -gt 0 ] || return 124
  set -- --fail --location --silent --show-error \
    --connect-timeout "$connect_timeout" --speed-limit "$stall_bytes" --speed-time "$stall_seconds" \
    --retry "$retries" --retry-delay "$retry_delay" --retry-connrefused "$@"
  if [ -n "$token" ]; then
    # printf is a shell builtin: the token reaches curl's stdin without any argument list.
    printf 'Authorization: Bearer %s\n' "$token" | timeout "$left" curl --header @- "$@" &
  else
    timeout "$left" curl "$@" </dev/null &
  fi
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

if [ -s "$part" ]; then
  log "resuming from $(wc -c <"$part") bytes"
fi
status=0
get --continue-at - --output "$part" "$url" || status=$?
if [ "$status" -eq 33 ] || [ "$status" -eq 36 ]; then
  # The server cannot resume (no byte ranges): start over.
  log "server cannot resume; downloading from the start"
  rm -f "$part"
  status=0
  get --output "$part" "$url" || status=$?
fi
if [ "$status" -ne 0 ]; then
  case $status in
    22) why="the server answered with an HTTP error (curl's line above names it; a 404 means a wrong model.repo, model.revision or file name, a 401 or 403 a repo that needs hfToken)" ;;
    28) why="the transfer timed out or stalled (FETCH_CONNECT_TIMEOUT=${connect_timeout}s, under ${stall_bytes} B/s for FETCH_STALL_SECONDS=${stall_seconds}s)" ;;
    124) why="FETCH_TOTAL_SECONDS=${total_seconds}s passed" ;;
    *) why="curl exit $status" ;;
  esac
  if [ -s "$part" ]; then
    log "download failed: $why; the partial file ($(wc -c <"$part") bytes) stays for the next try to resume"
  else
    rm -f "$part"
    log "download failed: $why; nothing was kept"
  fi
  exit 1
fi

actual=$(digest_of "$part")
if [ -n "$want" ] && [ "$actual" != "$want" ]; then
  rm -f "$part"
  log "sha256 mismatch: got $actual, expected $want; the download was deleted and nothing was put in place"
  exit 1
fi
record_digest "$actual"
mv -f "$part" "$dest"
log "downloaded and verified ($actual)"
