#!/usr/bin/env bash
# Move Nadzu to a new yt-dlp release: bump the lock file, run the tests, rebuild the images that carry
# yt-dlp (downloader and gateway).
#
#   scripts/upgrade-yt-dlp.sh                 # the newest release on PyPI
#   scripts/upgrade-yt-dlp.sh --version 2026.12.1
#   scripts/upgrade-yt-dlp.sh --skip-tests --skip-images
#
# The tests run with `make test`. The images are built only where a Docker engine runs. Elsewhere the
# script prints the build commands. Nothing is committed: the script ends with the commands to do so.

set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

version=""
run_tests=true
build_images=true
while [ $# -gt 0 ]; do
    case "$1" in
        --version)
            [ $# -ge 2 ] || { echo "--version needs a value, e.g. --version 2026.12.1" >&2; exit 2; }
            version=$2
            shift 2
            ;;
        --skip-tests) run_tests=false; shift ;;
        --skip-images) build_images=false; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if command -v uv >/dev/null 2>&1; then
    uv=$(command -v uv)
elif [ -x .cache/uv-tool/bin/uv ]; then
    uv=.cache/uv-tool/bin/uv
else
    echo "uv not found: run 'make setup' first, or install uv" >&2
    exit 1
fi

locked_version() {
    # The version line that follows `name = "yt-dlp"` in uv.lock.
    awk '/^name = "yt-dlp"$/ { found = 1; next } found && /^version = / { gsub(/"/, "", $3); print $3; exit }' uv.lock
}

before=$(locked_version)
if [ -n "$version" ]; then
    "$uv" lock --upgrade-package "yt-dlp==$version"
else
    "$uv" lock --upgrade-package yt-dlp
fi
after=$(locked_version)

if [ "$before" = "$after" ]; then
    echo "yt-dlp stays at $after: nothing to do"
    exit 0
fi
echo "yt-dlp: $before -> $after"
"$uv" sync --frozen

if $run_tests; then
    echo "running the tests against yt-dlp $after"
    make test
fi

build_commands=()
for service in downloader gateway; do
    build_commands+=("docker build -f infra/docker/Dockerfile --build-arg SERVICE=$service -t nadzu-$service:yt-dlp-$after .")
done
if $build_images && docker info >/dev/null 2>&1; then
    for command in "${build_commands[@]}"; do
        echo "+ $command"
        $command
    done
    docker run --rm "nadzu-downloader:yt-dlp-$after" yt-dlp --version
else
    echo "no Docker engine here (or --skip-images): build the images with"
    printf '  %s\n' "${build_commands[@]}"
fi

cat <<EOF

Next steps:
  1. Add a line under "## [Unreleased]" in CHANGELOG.md, e.g. "- yt-dlp $after."
  2. git add uv.lock CHANGELOG.md && git commit -m "Update yt-dlp to $after"
  3. Tag a release (see docs/deploy.md); the release workflow builds and pushes the images.
  4. On a compose host: set NADZU_VERSION in .env, then docker compose pull && docker compose up -d.
EOF
