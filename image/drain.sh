#!/bin/sh
# preStop hook: lets in-flight requests finish before Kubernetes stops llama-server.
#
# usage: drain.sh PORT API_KEY_FILE MAX_SECONDS
# First waits DRAIN_SETTLE_SECONDS (default 5) so the Service stops sending new requests to this
# pod, then polls the server's own llamacpp:requests_processing gauge until it reads 0 or
# MAX_SECONDS pass (wall clock). Only two answers mean idle: the gauge at 0, or a
# refused connection (no server left to drain). A slow, failing or unauthorized /metrics
# (timeout, 401, 5xx, no gauge) proves nothing, so the hook keeps waiting until MAX_SECONDS.
# The key goes to curl on a pipe (`-H @-`, printf is a shell builtin): never in an argument list.
set -u
port=$1
key_file=$2
max=$3
settle=${DRAIN_SETTLE_SECONDS:-5}
poll_timeout=${DRAIN_POLL_TIMEOUT_SECONDS:-2}
now_ms() { date +%s%3N; } # GNU date (coreutils, in the Ubuntu runtime image)
deadline=$(($(now_ms) + max * 1000)) # MAX_SECONDS counts the settle wait too
sleep "$settle"
while [ "$(now_ms)" -lt "$deadline" ]; do
  status=0
  metrics=$(printf 'Authorization: Bearer %s\n' "$(cat "$key_file")" |
    curl -q --fail --silent --max-time "$poll_timeout" --header @- "http://127.0.0.1:$port/metrics") || status=$?
  if [ "$status" -eq 7 ]; then
    exit 0 # connection refused: the server is gone
  fi
  if [ "$status" -eq 0 ]; then
    busy=$(printf '%s\n' "$metrics" | awk '$1 == "llamacpp:requests_processing" { print int($2) }')
    if [ "$busy" = "0" ]; then
      exit 0
    fi
  fi
  sleep 1
done
exit 0
