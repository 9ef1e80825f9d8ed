#!/usr/bin/env bash
# Prepare a machine for `make run` and `make test`: uv, the Python environment, and the system tools
# (ffmpeg, aria2c, PostgreSQL and Redis clients or servers). Installs Debian packages when run as root;
# otherwise prints the command to run. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_HOME=".cache/uv-tool"
UV="$UV_HOME/bin/uv"

if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
elif [ ! -x "$UV" ]; then
    echo "bootstrap: installing uv into $UV_HOME"
    python3 -m venv "$UV_HOME"
    "$UV_HOME/bin/pip" install --quiet --disable-pip-version-check uv
fi

"$UV" sync --frozen --quiet

# Debian package name for each command the services and tests run.
declare -A PACKAGES=(
    [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [aria2c]=aria2 [psql]=postgresql-client
    [redis-server]=redis-server [pg_ctlcluster]=postgresql [ip]=iproute2
)
# `ip` builds the network namespaces that the egress tests put their isolated media host in.
wanted=("ffmpeg" "ffprobe" "aria2c" "psql" "ip")
# Servers are needed only when nothing answers at their URLs already.
if ! .venv/bin/python scripts/devstack.py --probe postgres >/dev/null 2>&1; then wanted+=("pg_ctlcluster"); fi
if ! .venv/bin/python scripts/devstack.py --probe redis >/dev/null 2>&1; then wanted+=("redis-server"); fi

missing=()
for tool in "${wanted[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/bin/$tool" ] || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] \
        || missing+=("${PACKAGES[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing $packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    else
        echo "bootstrap: missing system packages: $packages" >&2
        echo "bootstrap: install them with: sudo apt-get install -y $packages" >&2
        exit 1
    fi
fi
