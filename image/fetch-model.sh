#!/bin/sh
# Puts one model file into the model volume, safely and at most once.
#
# usage: fetch-model.sh URL DEST [SHA256]
#   - One writer per file: a lock beside DEST (flock, util-linux) makes a second fetch of the same
#     file wait, then find it in place; two pods sharing a ReadWriteMany volume download it once.
#   - DEST present: its sha256 is checked against SHA256 on every start (VERIFY_ON_START=0 trusts
#     the DEST.sha256 record written after the last check instead, for a faster restart).
#   - DEST missing or wrong: download to DEST.part, resuming a partial file; verify; rename into place.
#     A partial file that is already whole (the server answers 416 to its range, and it holds
#     exactly FETCH_SIZE_BYTES) is verified as it is.
#   - SHA256 empty: the first download's digest is recorded in DEST.sha256 and checked on every
#     later start, so a file that changes on disk is caught.
#   - VERIFY_ONLY=1: a check and nothing more (the server pod, which has no egress): a missing or
#     wrong DEST fails with a message and is left as it is; nothing is deleted or downloaded. The
#     one writer is the download Job, which a server pod of another model revision must not undo.
#   - HF_TOKEN_FILE (optional): a file holding a Hugging Face token; sent only when set and not
#     empty. The header goes to curl on a pipe (curl's `-H @-`): it is never written to disk and
#     never shows in a process's argument list.
#   - FETCH_SIZE_BYTES (optional): the file's size. A server that announces more is refused before
#     a byte is written (curl --max-filesize). One that does not announce its length (chunked, or
#     ended by closing the connection) is stopped by the script itself, whatever curl's version
#     (curl enforces --max-filesize on such transfers only from 8.4.0, "before curl 8.4.0 ... this
#     option has no effect": https://curl.se/docs/manpage.html#--max-filesize; Debian 12 has 7.88):
#     curl runs under a file-size limit (POSIX `ulimit -f`, 512-byte blocks), so DEST.part never
#     grows past the size rounded up to the next 512 bytes, and a download of another size is
#     deleted, never put in place.
#   - A resume is trusted only as far as the server and the size show it: a server that ignores
#     the Range header (200 with the whole file, or a length over what is left) makes the fetch
#     start over from byte 0; a 416 ("no bytes past this offset") means the partial file is whole
#     only when it holds exactly FETCH_SIZE_BYTES bytes, otherwise the fetch starts over.
#   - Never through a link: a DEST, DEST.part, DEST.sha256(.tmp) or DEST.lock that is a symbolic
#     link is removed and replaced by a regular file (VERIFY_ONLY=1 refuses a linked DEST and
#     changes nothing); one that is a directory or another non-file is refused with a message.
# curl never reads a config file (-q, its first argument: `insecure` in a ~/.curlrc cannot turn
# TLS checking off). Redirects are followed to https addresses only (curl --proto-redir =https),
# so a redirect can never downgrade the transfer to plain http.
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
bytes_of() { if [ -f "$1" ] && [ ! -L "$1" ]; then wc -c <"$1" | tr -d ' '; else echo 0; fi; }
# The digest recorded beside DEST; a link there is no record.
read_record() { if [ -f "$record" ] && [ ! -L "$record" ]; then cat "$record"; fi; }
# Writes the record through a new file (noclobber: never through a link planted at its name) and
# renames it over the old one (rename replaces a link itself, mv -T never moves into a directory).
record_digest() {
  rm -f "$record.tmp"
  (set -C && printf '%s\n' "$1" >"$record.tmp") && mv -fT "$record.tmp" "$record"
}
# A path this script writes is a regular file it made, or nothing: a symbolic link there is removed
# (never followed into a directory or another file); a directory, FIFO or device is refused.
own_file() {
  if [ -L "$1" ]; then
    log "$1 is a symbolic link; removed, never followed (a regular file takes its place)"
    rm -f "$1"
  elif [ -e "$1" ] && [ ! -f "$1" ]; then
    log "$1 is not a regular file (a directory, FIFO or device); remove it and run the fetch again"
    exit 1
  fi
}

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
  if [ -L "$dest" ]; then
    log "$dest is a symbolic link, not a file the download Job wrote: not trusted, and this pod changes nothing; delete the link and run pulumi up (the download Job puts the file there)"
    exit 1
  fi
  if [ ! -f "$dest" ]; then
    log "not on the volume: the download Job of this model revision has not put it there; run pulumi up to run that Job (its logs say why it failed)"
    exit 1
  fi
  recorded=$(read_record)
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
own_file "$lock"
# Appending, not truncating: opening the lock never changes a byte of any file.
exec 9>>"$lock"
if ! flock -n 9; then
  log "another fetch is writing this file; waiting up to ${lock_wait}s for it"
  # The lock belongs to fd 9's open file description, so the parent holds what flock took.
  if ! run_bg flock -w "$lock_wait" 9; then
    log "another fetch still holds $lock after ${lock_wait}s; giving up (raise FETCH_LOCK_WAIT if downloads take longer)"
    exit 1
  fi
fi

for path in "$dest" "$part" "$record" "$record.tmp"; do own_file "$path"; done
if [ -f "$dest" ]; then
  recorded=$(read_record)
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

# The file-size limit curl runs under (RLIMIT_FSIZE, in the 512-byte blocks of POSIX `ulimit -f`):
# the first block past FETCH_SIZE_BYTES is the last one curl may write, so DEST.part stops within
# 512 bytes over the size, whatever curl's version and whether the server announced a length
# (https://pubs.opengroup.org/onlinepubs/9799919799/utilities/ulimit.html, setrlimit(2): a write
# past the limit fails, and curl gets SIGXFSZ). The check after each try makes it exact.
fsize_blocks=""
[ -z "$size" ] || fsize_blocks=$((size / 512 + 1))

# One try: resumes from the bytes in DEST.part with a Range request. Sets have (the bytes it
# resumed from), rc (curl's exit status, or 124 when FETCH_TOTAL_SECONDS has passed) and http
# (the last HTTP status, 000 for none).
try_once() {
  left=$((deadline - $(date +%s)))
  http=000
  have=$(bytes_of "$part")
  if [ "$left" -le 0 ]; then
    rc=124
    return
  fi
  # -q first: no curlrc (a ~/.curlrc with `insecure`, a proxy or an output option) changes this
  # transfer (curl's --disable: "If used as the first parameter on the command line, the curlrc
  # config file is not read or used", https://curl.se/docs/manpage.html#-q).
  set -- -q --fail --silent --show-error --location --proto-redir =https \
    --connect-timeout "$connect_timeout" --speed-limit "$stall_bytes" --speed-time "$stall_seconds" \
    --max-time "$left" --write-out '%{http_code}' --output "$part"
  [ "$have" -eq 0 ] || set -- "$@" --continue-at -
  if [ -n "$size" ] && [ "$size" -gt "$have" ]; then
    # What is left to fetch: curl compares it with the length this response announces (a 206's
    # is what is left; a 200 that ignores the range announces the whole file and is refused, 63).
    set -- "$@" --max-filesize "$((size - have))"
  fi
  # Neither curl nor its pipe holds the lock (9>&-); setpriv ties curl to this script. The
  # subshell sets the file-size limit and becomes curl (exec), so curl's parent is this script.
  # A hard limit below the one asked for stays in force, which bounds the file even more.
  if [ -n "$token" ]; then
    # printf is a shell builtin: the token reaches curl's stdin without any argument list.
    # shellcheck disable=SC2086 # $tie is a command prefix, split on purpose
    printf 'Authorization: Bearer %s\n' "$token" | (
      [ -z "$fsize_blocks" ] || ulimit -f "$fsize_blocks" 2>/dev/null || :
      exec $tie curl "$@" --header @- "$url"
    ) >"$status_file" 9>&- &
  else
    # shellcheck disable=SC2086
    (
      [ -z "$fsize_blocks" ] || ulimit -f "$fsize_blocks" 2>/dev/null || :
      exec $tie curl "$@" "$url"
    ) <"/dev/null" >"$status_file" 9>&- &
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

# One sentence for a file over the bound, whoever saw it: curl (63: a length announced over it,
# or, from curl 8.4, a transfer that reached it) or the check after each try (any curl).
too_large() { echo "the server's file is larger than the ${size} bytes FETCH_SIZE_BYTES allows (it announced or sent more); model.sizeBytes (model.mmprojSizeBytes for the projector) or the file name is wrong"; }

# What went wrong, in words, and what to do about it.
explain() {
  case $rc in
    1 | 8)
      case $http in
        3??) echo "a redirect led to an address that is not https (only https redirects are followed); fix the URL or the mirror that redirects" ;;
        # curl: (1) "Received HTTP/0.9 when not allowed" or "Unsupported HTTP version", (8) a
        # header it cannot parse (https://curl.se/libcurl/c/libcurl-errors.html).
        *) echo "the server's reply is not HTTP (curl cannot read it as an HTTP response): the URL's host and port serve another protocol, or something between them mangles the reply; check the URL and any proxy on the way" ;;
      esac
      ;;
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
    23) echo "the file could not be written to the volume (full, or read-only); check the model volume's size (model.storage.sizeGi)" ;;
    28) echo "the transfer timed out or stalled (FETCH_CONNECT_TIMEOUT=${connect_timeout}s, under ${stall_bytes} B/s for FETCH_STALL_SECONDS=${stall_seconds}s)" ;;
    35 | 60) echo "the TLS connection failed (curl exit $rc: handshake or certificate); a proxy that intercepts TLS, or a wrong clock, are the usual causes" ;;
    47) echo "the server redirected too many times; the URL loops" ;;
    52 | 55 | 56) echo "the connection broke (curl exit $rc); the partial file stays and the next try resumes it" ;;
    63) too_large ;;
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
# Each way out of this loop either ends the fetch or makes progress: a start-over deletes the
# partial file, so the next try is a fresh download, and only a fresh download that fails
# transiently (which counts against FETCH_RETRIES) can leave a partial file to resume again.
tries=0
while :; do
  own_file "$part"
  try_once
  if [ -n "$size" ] && [ "$(bytes_of "$part")" -gt "$size" ]; then
    rc=63 # what curl 8.4 and later say of it themselves
  fi
  if [ "$http" = 416 ] && [ "$have" -gt 0 ] && { [ "$rc" -eq 0 ] || [ "$rc" -eq 22 ]; }; then
    # Nothing left to send from this offset (curl 7.88 exits 22 on it with --fail, 8.14 exits 0:
    # https://github.com/curl/curl/pull/12176, October 2023). That proves the partial file whole
    # (its hash was interrupted) only when it has the configured size; otherwise it is another
    # file's bytes, or a server that cannot serve this range: start over.
    if [ -n "$size" ] && [ "$have" -eq "$size" ]; then
      log "the server has no bytes past $have (HTTP 416): the partial file is complete; verifying it"
      break
    fi
    log "the server has no bytes past $have (HTTP 416), but FETCH_SIZE_BYTES is ${size:-not set}: the partial file is not known to be whole; downloading from the start"
    rm -f "$part"
    continue
  fi
  [ "$rc" -ne 0 ] || break
  if [ "$rc" -eq 63 ] && [ "$have" -gt 0 ]; then
    # Over the bound from a resume: the partial file may be a good start of another file, or the
    # server answered the range with the whole file. A fresh download tells which.
    log "resumed at $have bytes, the reply runs past the ${size} bytes FETCH_SIZE_BYTES allows (the server may ignore the Range header); downloading from the start"
    rm -f "$part"
    continue
  fi
  if [ "$have" -gt 0 ] && { [ "$rc" -eq 33 ] || [ "$rc" -eq 36 ]; }; then
    log "the server cannot resume at $have bytes (it answered the range with the whole file); downloading from the start"
    rm -f "$part"
    continue
  fi
  if transient && [ "$tries" -lt "$retries" ]; then
    log "try $((tries + 1)) failed: $(explain); trying again in ${retry_delay}s, resuming from $(bytes_of "$part") bytes"
    sleep "$retry_delay" &
    child=$!
    wait "$child" || true
    child=""
  else
    if [ "$rc" -ne 63 ] && [ -s "$part" ]; then
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
mv -fT "$part" "$dest"
log "downloaded and verified ($actual)"
