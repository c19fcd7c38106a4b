#!/bin/sh
# preStop hook: lets in-flight requests finish before Kubernetes stops llama-server.
#
# usage: drain.sh PORT API_KEY_FILE MAX_SECONDS
# First waits DRAIN_SETTLE_SECONDS (default 5) so the Service stops sending new requests to this
# pod, then polls the server's own llamacpp:requests_processing gauge until it reads 0 or
# MAX_SECONDS pass.
set -u
port=$1
key_file=$2
max=$3
settle=${DRAIN_SETTLE_SECONDS:-5}
sleep "$settle"
elapsed=$settle
while [ "$elapsed" -lt "$max" ]; do
  busy=$(curl --silent --max-time 2 --header "Authorization: Bearer $(cat "$key_file")" \
    "http://127.0.0.1:$port/metrics" | awk '$1 == "llamacpp:requests_processing" { print int($2) }')
  if [ -z "$busy" ] || [ "$busy" -eq 0 ]; then
    exit 0
  fi
  sleep 1
  elapsed=$((elapsed + 1))
done
exit 0
