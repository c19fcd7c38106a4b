#!/usr/bin/env bash
# Prod's runner: registers one ephemeral GitHub Actions runner in prod's runner group, runs one
# job, exits. Container Apps starts it once per queued job (bootstrap/, "prod's runner").
#
# Reads (bootstrap/plan.py runner_environment, and the secret GITHUB_PAT):
#   GITHUB_PAT                  a token that may register the organization's runners (admin:org)
#   REGISTRATION_TOKEN_API_URL  GitHub REST "Create a registration token for an organization"
#   GH_URL, RUNNER_GROUP, RUNNER_LABELS   what config.sh registers the runner with
#   GITHUB_API_TIMEOUT_SECONDS  the limit of the one GitHub call (default 30)
#
# Secrets stay out of every argument list (anyone in the container reads /proc/PID/cmdline):
# - the PAT goes to curl on a pipe (`--header @-`; printf is a shell builtin);
# - the registration token goes to config.sh as ACTIONS_RUNNER_INPUT_TOKEN, which the runner reads
#   in place of --token, masks in its log and removes from its environment
#   (github.com/actions/runner src/Runner.Listener/CommandSettings.cs, "ACTIONS_RUNNER_INPUT_");
# - run.sh, and so every job step, starts without GITHUB_PAT or the token in its environment.
# A just-in-time config (`run.sh --jitconfig`, REST "generate-jitconfig") would skip config.sh,
# but it needs the group's numeric id and reaches the runner the same way; the registration
# token never reaches an argument list or a job here, so the image keeps bootstrap's contract.
set -euo pipefail

fail() {
  printf 'prod runner: %s\n' "$1" >&2
  exit 1
}

for name in GITHUB_PAT REGISTRATION_TOKEN_API_URL GH_URL RUNNER_GROUP RUNNER_LABELS; do
  [[ -n "${!name:-}" ]] || fail "$name is empty: the Container Apps job sets it (make bootstrap with prodRunner)."
done
# The PAT travels only over TLS; plain http only to this machine's loopback (the tests' fake API).
api_url=$REGISTRATION_TOKEN_API_URL
if ! [[ $api_url =~ ^https://[A-Za-z0-9.-]+(:[0-9]+)?/ || $api_url =~ ^http://127\.0\.0\.1(:[0-9]+)?/ ]]; then
  fail "REGISTRATION_TOKEN_API_URL=$api_url is not an https URL; the token would travel in clear text, so set it to https://api.github.com/orgs/<owner>/actions/runners/registration-token."
fi
[[ $GH_URL =~ ^https:// ]] || fail "GH_URL=$GH_URL is not an https URL; set it to https://github.com/<owner>."
timeout=${GITHUB_API_TIMEOUT_SECONDS:-30}
[[ $timeout =~ ^[1-9][0-9]{0,3}$ ]] || fail "GITHUB_API_TIMEOUT_SECONDS=$timeout is not a whole number of seconds from 1 to 9999."

# -q first: no ~/.curlrc; --fail: an HTTP error is curl's exit 22, and -w still prints its status.
status=0
answer=$(printf 'Authorization: Bearer %s\n' "$GITHUB_PAT" |
  curl -q --silent --show-error --fail --request POST --proto '=https,http' \
    --connect-timeout 10 --max-time "$timeout" \
    --header @- --header 'Accept: application/vnd.github+json' --header 'X-GitHub-Api-Version: 2022-11-28' \
    --write-out '\n%{http_code}' "$api_url" 2>/dev/null) || status=$?
code=${answer##*$'\n'}
body=${answer%$'\n'*}
case "$status/$code" in
  0/2??) ;;
  */401) fail "GitHub answered 401 to $api_url: GITHUB_PAT is expired, revoked or not a token; set a new one with pulumi config set --secret prodRunnerToken and run make bootstrap." ;;
  */403) fail "GitHub answered 403 to $api_url: GITHUB_PAT may not register this organization's runners (classic: admin:org; fine-grained: Self-hosted runners read and write), or its rate limit is spent." ;;
  */404) fail "GitHub answered 404 to $api_url: no such organization, or GITHUB_PAT cannot see it; check owner in bootstrap's config and the token's organization access." ;;
  */422) fail "GitHub answered 422 to $api_url: it refused the request as invalid; check that REGISTRATION_TOKEN_API_URL is GitHub's registration-token endpoint." ;;
  22/*) fail "GitHub answered HTTP $code to $api_url; try again later, or check githubstatus.com." ;;
  28/*) fail "GitHub did not answer $api_url within $timeout s; check the runner network's egress (its NAT gateway) and DNS." ;;
  0/*) fail "GitHub answered HTTP $code to $api_url, not a new registration token." ;;
  *) fail "could not reach $api_url (curl exit $status); check the runner network's egress and DNS." ;;
esac
# A registration token is letters and digits; anything else is not one (and is not echoed).
[[ $body =~ \"token\"[[:space:]]*:[[:space:]]*\"([A-Za-z0-9]+)\" ]] ||
  fail "GitHub answered $api_url with HTTP $code but no registration token in the body."
token=${BASH_REMATCH[1]}

unset GITHUB_PAT
ACTIONS_RUNNER_INPUT_TOKEN=$token ./config.sh --unattended --ephemeral --url "$GH_URL" \
  --runnergroup "$RUNNER_GROUP" --labels "$RUNNER_LABELS" ||
  fail "config.sh could not register the runner in group $RUNNER_GROUP (its log is above)."
unset token
exec ./run.sh
