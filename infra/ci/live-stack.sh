#!/usr/bin/env bash
# Start the real stack on free loopback ports and check it live, directly and behind Caddy:
#
#   bash infra/ci/live-stack.sh
#
# infra/ci/live_stack.py does the work and prints one line per check (see its docstring): the Postman
# collection with newman against the gateway and again through Caddy over HTTPS, unbuffered SSE through
# Caddy, the admin allow-list, and the client address that the gateway sees behind Caddy. This script
# provides the tools (the workspace's .venv from `make setup`, Debian's caddy, newman through
# infra/ci/newman.sh) and makes sure that nothing it started outlives it.
#
# Needs PostgreSQL and Redis answering on 127.0.0.1 (NADZU_LIVE_POSTGRES, NADZU_LIVE_REDIS override the
# URLs). Exits 1 when any check fails.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON="$ROOT/.venv/bin/python"
started_all=$SECONDS

if [ ! -x "$PYTHON" ]; then
    echo "live-stack: $PYTHON not found; run \`make setup\` first"
    exit 1
fi
if ! command -v caddy >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "live-stack: caddy not found; run: sudo apt-get install caddy"
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null; } ||
        { echo "live-stack: installing caddy failed"; exit 1; }
fi

# Install newman now, so that its download is not counted in the first newman check.
if ! install_output=$(bash "$ROOT/infra/ci/newman.sh" --install 2>&1); then
    echo "live-stack: installing newman failed:"
    echo "$install_output" | tail -n 20
    exit 1
fi

# The checks run in a process group of their own: every process they start belongs to it, so the trap
# can stop whatever is left, whichever way this script ends.
setsid "$PYTHON" "$ROOT/infra/ci/live_stack.py" "$(command -v caddy)" &
group=$!

# shellcheck disable=SC2317 # called by the EXIT trap
stop_group() {
    kill -TERM -- "-$group" 2>/dev/null || return 0
    for _ in $(seq 50); do
        pgrep -g "$group" >/dev/null || return 0
        sleep 0.2
    done
    kill -KILL -- "-$group" 2>/dev/null
}
trap stop_group EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait "$group"
status=$?

leftovers=$(pgrep -g "$group" -a || true)
if [ -n "$leftovers" ]; then
    printf 'FAIL  %-34s\n' no-processes-left
    while IFS= read -r line; do
        echo "      $line"
    done <<<"$leftovers"
    status=1
else
    printf 'ok    %-34s\n' no-processes-left
fi

echo "live-stack: $([ "$status" -eq 0 ] && echo passed || echo failed) in $((SECONDS - started_all)) s"
exit "$status"
