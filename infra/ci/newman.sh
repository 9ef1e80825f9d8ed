#!/usr/bin/env bash
# Run the Postman collection against a running gateway with newman:
#
#   infra/ci/newman.sh BASE_URL [ENVIRONMENT]
#   NADZU_API_KEY=... infra/ci/newman.sh https://localhost:8443 local
#   infra/ci/newman.sh --install    # only install newman
#
# ENVIRONMENT is local (default), dev or prod, from postman/environments; BASE_URL replaces its
# baseUrl. Requests that need an API key are skipped unless NADZU_API_KEY is set (the admin requests
# need a key with the admin scope). NADZU_MEDIA_URL sets the URL that the download requests enqueue,
# NADZU_CAPTCHA_TOKEN an unused reCAPTCHA token for the session requests (skipped without one), and
# NADZU_CA_FILE a CA certificate to trust, such as Caddy's local root (pki/authorities/local/root.crt).
# newman comes from the npm registry into .cache/newman when it is not on PATH.

set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] && exit 2
    exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
newman_dir=${NADZU_NEWMAN_DIR:-$root/.cache/newman}
newman_version=6.2.2

if command -v newman >/dev/null 2>&1; then
    newman=$(command -v newman)
else
    newman="$newman_dir/node_modules/.bin/newman"
    if [ ! -x "$newman" ]; then
        command -v npm >/dev/null || { echo "npm not found: install Node.js 18 or later" >&2; exit 1; }
        echo "installing newman $newman_version into $newman_dir"
        npm install --prefix "$newman_dir" --no-audit --no-fund --silent "newman@$newman_version"
    fi
fi
if [ "$1" = --install ]; then
    exit 0
fi
base_url=${1%/}
environment=${2:-local}

environment_file="$root/postman/environments/$environment.postman_environment.json"
[ -f "$environment_file" ] || { echo "unknown environment $environment: expected local, dev or prod" >&2; exit 2; }

args=(
    run "$root/postman/nadzu.postman_collection.json"
    --environment "$environment_file"
    --env-var "baseUrl=$base_url"
    --env-var "apiKey=${NADZU_API_KEY:-}"
    # An event stream that never ends fails its request instead of hanging the run.
    --timeout-request 20000
    --reporters cli
)
if [ -n "${NADZU_MEDIA_URL:-}" ]; then
    args+=(--env-var "mediaUrl=$NADZU_MEDIA_URL")
fi
if [ -n "${NADZU_CAPTCHA_TOKEN:-}" ]; then
    args+=(--env-var "captchaToken=$NADZU_CAPTCHA_TOKEN")
fi
if [ -n "${NADZU_CA_FILE:-}" ]; then
    args+=(--ssl-extra-ca-certs "$NADZU_CA_FILE")
fi

exec "$newman" "${args[@]}"
