#!/bin/sh
# Puts one model file into the model volume, safely and at most once.
#
# usage: fetch-model.sh URL DEST [SHA256]
#   - One writer per file: a lock beside DEST (flock, util-linux) makes a second fetch of the same
#     file wait, then find it in place; two pods sharing a ReadWriteMany volume download it once.
#   - DEST present: its sha256 is checked against SHA256 on every start (VERIFY_ON_START=0 trusts
#     the DEST.sha256 record written after the last check instead, for a faster restart).
#   - DEST missing or wrong: download to DEST.part, resuming a partial file; verify; rename into place.
#     A partial file that is already whole (the server answers 416 to its range) is verified as it is.
#   - SHA256 empty: the first download's digest is recorded in DEST.sha256 and checked on every
#     later start, so a file that changes on disk is caught.
#   - VERIFY_ONLY=1: a check and nothing more (the server pod, which has no egress): a missing or
#     wrong DEST fails with a message and is left as it is; nothing is deleted or downloaded. The
#     one writer is the download Job, which a server pod of another model revision must not undo.
#   - HF_TOKEN_FILE (optional): a file holding a Hugging Face token; sent only when set and not
#     empty. The header goes to curl on a pipe (curl's `-H @-`): it is never written to disk and
#     never shows in a process's argument list.
#   - FETCH_SIZE_BYTES (optional): the file's size. A server that announces more is refused before
#     a byte is written (curl --max-filesize; curl 8.4 and later also stop a transfer of unknown
#     length at the bound), and a download of another size is deleted, never put in place.
# Redirects are followed to https addresses only (curl --proto-redir =https), so a redirect can
# never downgrade the transfer to plain http.
# Bounds (environment, seconds unless named otherwise), so a dead or stalling server ends the
# fetch with an error instead of holding the pod in Init:
#   FETCH_CONNECT_TIMEOUT=20   per connection attempt (curl --connect-timeout)
#   FETCH_STALL_SECONDS=60     abort a transfer slower than FETCH_STALL_BYTES bytes/s for this long
#   FETCH_STALL_BYTES=1024     (curl --speed-time / --speed-limit); a stall counts as a failed try.
#                              curl averages speed over its last ~5 s, so a stall right after a
#                              fast burst is seen up to ~5 s later (measured on curl 7.88).
#   FETCH_RETRIES=5            further tries after a transient failure; each resumes with a Range
#                              request from the bytes already in DEST.part
#   FETCH_RETRY_DELAY=5        pause between tries
#   FETCH_TOTAL_SECONDS=7200   the whole download, all tries together (curl --max-time of each try
#                              is what is left of it)
#   FETCH_LOCK_WAIT=7300       how long to wait for another writer of the same file
# Every program this script starts dies with it, even on a KILL (setpriv --pdeathsig, util-linux),
# and none of them holds the lock: a killed fetch leaves no orphan writing DEST.part or holding
# the lock against the next one.
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
size=${FETCH_SIZE_BYTES:-}
verify_on_start=${VERIFY_ON_START:-1}
verify_only=${VERIFY_ONLY:-0}

log() { echo "fetch-model: $name: $*" >&2; }
case "$size" in
  "" | *[!0-9]*) [ -z "$size" ] || { log "FETCH_SIZE_BYTES=$size is not a whole number of bytes"; exit 2; } ;;
esac

# Programs this script starts die with it: setpriv asks the kernel for a KILL when their parent
# ends. Where setpriv is missing or refuses, they run untied (only the lock is then kept from them).
tie=""
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig KILL true 2>/dev/null; then
  tie="setpriv --pdeathsig KILL"
fi
# Sets `digest` to FILE's sha256. Called without a command substitution around it: the one
# subshell becomes sha256sum (exec), tied to this script and without the lock's descriptor.
digest_of() {
  digest=$(
    exec 9>&-
    # shellcheck disable=SC2086 # $tie is a command prefix, split on purpose
    exec $tie sha256sum "$1"
  )
  digest=${digest%% *}
}
bytes_of() { if [ -f "$1" ]; then wc -c <"$1" | tr -d ' '; else echo 0; fi; }
record_digest() { printf '%s\n' "$1" >"$record.tmp" && mv -f "$record.tmp" "$record"; }

child=""
# Runs a command in the background and waits for it, so that a TERM reaches the trap at once
# instead of after the command ends.
run_bg() {
  # shellcheck disable=SC2086 # $tie is a command prefix, split on purpose
  $tie "$@" &
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
  digest_of "$dest"
  actual=$digest
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
    digest_of "$dest"
    actual=$digest
    if [ "$actual" = "$expected" ]; then
      [ "$recorded" = "$actual" ] || record_digest "$actual"
      log "present and verified; nothing to download"
      exit 0
    fi
    log "sha256 is $actual, not $expected: downloading it again"
    rm -f "$dest" "$record"
  else
    digest_of "$dest"
    actual=$digest
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
# curl writes the final HTTP status here (--write-out), read after it ends: no command
# substitution, so curl's parent is this script and it dies with it.
status_file=$(mktemp "${TMPDIR:-/tmp}/fetch-model.XXXXXX")
trap 'cleanup; rm -f "$status_file"' EXIT

# One try: resumes from the bytes in DEST.part with a Range request. Sets rc (curl's exit status,
# or 124 when FETCH_TOTAL_SECONDS has passed) and http (the last HTTP status, 000 for none).
try_once() {
  left=$((deadline - $(date +%s)))
  http=000
  if [ "$left" -le 0 ]; then
    rc=124
    return
  fi
  have=$(bytes_of "$part")
  set -- --fail --silent --show-error --location --proto-redir =https \
    --connect-timeout "$connect_timeout" --speed-limit "$stall_bytes" --speed-time "$stall_seconds" \
    --max-time "$left" --write-out '%{http_code}' --output "$part"
  [ "$have" -eq 0 ] || set -- "$@" --continue-at -
  if [ -n "$size" ]; then
    # What is left to fetch; curl compares it with the length the server announces.
    set -- "$@" --max-filesize "$((size - have))"
  fi
  # Neither curl nor its pipe holds the lock (9>&-); setpriv ties curl to this script.
  if [ -n "$token" ]; then
    # printf is a shell builtin: the token reaches curl's stdin without any argument list.
    # shellcheck disable=SC2086 # $tie is a command prefix, split on purpose
    printf 'Authorization: Bearer %s\n' "$token" | $tie curl --header @- "$@" "$url" >"$status_file" 9>&- &
  else
    # shellcheck disable=SC2086
    $tie curl "$@" "$url" <"/dev/null" >"$status_file" 9>&- &
  fi
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  http=$(cat "$status_file" 2>/dev/null || true)
  http=${http:-000}
  if [ "$rc" -eq 28 ] && [ "$(date +%s)" -ge "$deadline" ]; then
    rc=124
  fi
}

# A failure worth another try: the network or the server may do better in a moment.
transient() {
  case $rc in
    5 | 6 | 7 | 16 | 18 | 28 | 35 | 52 | 55 | 56 | 92) return 0 ;;
    22) case $http in 408 | 429 | 5??) return 0 ;; esac ;;
  esac
  return 1
}

# What went wrong, in words, and what to do about it.
explain() {
  case $rc in
    1) echo "a redirect led to an address that is not https (only https redirects are followed); fix the URL or the mirror that redirects" ;;
    3) echo "the URL is malformed; check model.repo, model.revision and the file names" ;;
    5 | 6) echo "the server's name does not resolve (DNS); check the URL's host and that the download Job's NetworkPolicy allows DNS" ;;
    7) echo "nothing accepted the connection (the server is down, or egress to it is blocked); check the host and the download Job's NetworkPolicy" ;;
    16 | 92) echo "the HTTP/2 connection failed; this is usually the server's side, try again later" ;;
    18) echo "the server closed the connection before the end of the file; the partial file stays and the next try resumes it" ;;
    22)
      case $http in
        401 | 403) echo "the server refused access (HTTP $http): the repository needs a Hugging Face token (hfToken) that may read it" ;;
        404) echo "the file is not there (HTTP 404): check model.repo, model.revision and the file name" ;;
        408 | 429) echo "the server asked to slow down (HTTP $http); it was retried ${retries} times; try again later or raise FETCH_RETRY_DELAY" ;;
        5??) echo "the server failed (HTTP $http) on every try; try again later" ;;
        *) echo "the server answered HTTP $http" ;;
      esac
      ;;
    23) echo "the file could not be written to the volume (full, or read-only); check the model volume's size (model.volumeSizeGi)" ;;
    28) echo "the transfer timed out or stalled (FETCH_CONNECT_TIMEOUT=${connect_timeout}s, under ${stall_bytes} B/s for FETCH_STALL_SECONDS=${stall_seconds}s)" ;;
    35 | 60) echo "the TLS connection failed (curl exit $rc: handshake or certificate); a proxy that intercepts TLS, or a wrong clock, are the usual causes" ;;
    47) echo "the server redirected too many times; the URL loops" ;;
    52 | 55 | 56) echo "the connection broke (curl exit $rc); the partial file stays and the next try resumes it" ;;
    63) echo "the server announced more than the ${size} bytes FETCH_SIZE_BYTES allows; model.sizeBytes or the file name is wrong" ;;
    124) echo "FETCH_TOTAL_SECONDS=${total_seconds}s passed" ;;
    *) echo "curl failed with exit status $rc (see the EXIT CODES section of man curl)" ;;
  esac
}

if [ -n "$size" ] && [ "$(bytes_of "$part")" -gt "$size" ]; then
  log "the partial file is larger than FETCH_SIZE_BYTES=$size: not this file; starting over"
  rm -f "$part"
fi
if [ -s "$part" ]; then
  log "resuming from $(bytes_of "$part") bytes"
fi
tries=0
while :; do
  try_once
  [ "$rc" -ne 0 ] || break
  if [ "$rc" -eq 22 ] && [ "$http" = 416 ] && [ -s "$part" ]; then
    # Nothing left to send from this offset: the partial file is whole (its hash was interrupted).
    log "the server has no bytes past $(bytes_of "$part") (HTTP 416): the partial file is complete; verifying it"
    break
  fi
  if [ "$rc" -eq 33 ] || [ "$rc" -eq 36 ]; then
    log "the server cannot resume (no byte ranges); downloading from the start"
    rm -f "$part"
  elif transient && [ "$tries" -lt "$retries" ]; then
    log "try $((tries + 1)) failed: $(explain); trying again in ${retry_delay}s, resuming from $(bytes_of "$part") bytes"
    sleep "$retry_delay" &
    child=$!
    wait "$child" || true
    child=""
  else
    if [ -s "$part" ]; then
      log "download failed: $(explain); the partial file ($(bytes_of "$part") bytes) stays for the next try to resume"
    else
      rm -f "$part"
      log "download failed: $(explain); nothing was kept"
    fi
    exit 1
  fi
  tries=$((tries + 1))
done

got=$(bytes_of "$part")
if [ -n "$size" ] && [ "$got" -ne "$size" ]; then
  rm -f "$part"
  log "size mismatch: got $got bytes, FETCH_SIZE_BYTES is $size (model.sizeBytes / model.mmprojSizeBytes); the download was deleted and nothing was put in place"
  exit 1
fi
digest_of "$part"
actual=$digest
if [ -n "$want" ] && [ "$actual" != "$want" ]; then
  rm -f "$part"
  log "sha256 mismatch: got $actual, expected $want; the download was deleted and nothing was put in place"
  exit 1
fi
record_digest "$actual"
mv -f "$part" "$dest"
log "downloaded and verified ($actual)"
