#!/usr/bin/env bash
# Validate every deploy artifact offline and print one line per check:
#
#   bash infra/ci/check-deploy.sh
#
# - Dockerfile: hadolint, and each image's build commands replayed into a scratch virtual environment
#   whose entry point and health check are then exercised.
# - Compose files: the compose-spec schema, and consistency with the configuration variables.
# - Caddyfiles: caddy validate, adapt and fmt with Debian's caddy and a current release, and a live
#   smoke test of the local variant.
# - Kubernetes: kustomize build, the schemas of Kubernetes 1.30 and 1.37 in strict mode, the KEDA
#   ScaledObject against KEDA's CRD models, configuration coverage; the NATS Helm values.
# - GitHub workflows (actionlint), Terraform (python-hcl2 parse and consistency), shell scripts
#   (shellcheck), the Postman collection and the changelog.
#
# Tools come from PyPI into $NADZU_DEPLOY_TOOLS (default .cache/deploy-tools) and from Debian (caddy
# and ShellCheck, installed with apt-get when missing and running as root). kubectl must be on PATH.
# Exits 1 when any check fails.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=${NADZU_DEPLOY_TOOLS:-$ROOT/.cache/deploy-tools}
SCRATCH=$(mktemp -d -t check-deploy.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

SERVICES=(gateway downloader contributions auth)
failures=0
started_all=$SECONDS

# Run one check: print "ok" or "FAIL" with its name and duration, and the output's tail on failure.
check() {
    local name=$1
    shift
    local started=$SECONDS
    local log="$SCRATCH/$name.log"
    # A subshell, so that a check's cd and exports stay inside it.
    if ("$@") >"$log" 2>&1; then
        printf 'ok    %-34s %3ds\n' "$name" $((SECONDS - started))
    else
        printf 'FAIL  %-34s %3ds\n' "$name" $((SECONDS - started))
        tail -n 40 "$log" | sed 's/^/      /'
        failures=$((failures + 1))
    fi
}

# Set-up: the Python tools environment, then the Debian packages.

install_python_tools() {
    local requirements="$ROOT/infra/ci/requirements-deploy.txt"
    local stamp="$TOOLS/.requirements.sha256"
    local wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -x "$TOOLS/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
        return 0
    fi
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS" &&
        "$TOOLS/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" &&
        echo "$wanted" >"$stamp"
}

install_debian_packages() {
    local missing=()
    command -v caddy >/dev/null || missing+=(caddy)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
}

require_kubectl() {
    command -v kubectl >/dev/null && kubectl version --client >/dev/null && return 0
    echo "kubectl not found: install a Kubernetes client (1.27 or later), which brings kustomize"
    return 1
}

check setup-python-tools install_python_tools
check setup-debian-packages install_debian_packages
check setup-kubectl require_kubectl

PY="$TOOLS/bin/python"
CHECKS="$ROOT/infra/ci/deploy_checks.py"
export PATH="$TOOLS/bin:$PATH"

# Images.

check hadolint hadolint "$ROOT/infra/docker/Dockerfile"

# The builder commands below must be the Dockerfile's own, or the emulation proves nothing. They are
# kept as text, with ${SERVICE} expanded only when emulate_image evaluates them.
# shellcheck disable=SC2016
DEPS_SYNC='uv sync --frozen --no-dev --no-install-workspace --package "nadzu-${SERVICE}"'
# shellcheck disable=SC2016
FULL_SYNC='uv sync --frozen --no-dev --no-editable --package "nadzu-${SERVICE}"'
dockerfile_commands() {
    grep -qF "$DEPS_SYNC" "$ROOT/infra/docker/Dockerfile" &&
        grep -qF "$FULL_SYNC" "$ROOT/infra/docker/Dockerfile" &&
        grep -qF 'ENTRYPOINT ["/usr/bin/tini", "--"]' "$ROOT/infra/docker/Dockerfile" &&
        grep -qF 'CMD ["python", "-m", "nadzu_common.healthcheck"]' "$ROOT/infra/docker/Dockerfile"
}
check dockerfile-build-commands dockerfile_commands

# Build one service's environment the way the image's builder stage does, then run what the image runs.
emulate_image() {
    local SERVICE=$1
    local context="$SCRATCH/image-$SERVICE"
    mkdir -p "$context"
    cd "$context" || return 1
    export UV_PROJECT_ENVIRONMENT="$context/app-venv" UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=0
    export UV_PYTHON
    UV_PYTHON=$(command -v python3)

    # Step 1: manifests and lock file only.
    cp "$ROOT/pyproject.toml" "$ROOT/uv.lock" .
    for member in libs/common services/gateway services/downloader services/contributions services/auth; do
        mkdir -p "$member"
        cp "$ROOT/$member/pyproject.toml" "$member/"
    done
    eval "$DEPS_SYNC" || return 1

    # Step 2: the sources, filtered as .dockerignore filters the build context.
    tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='services/*/tests' -cf - libs services | tar -xf -
    eval "$FULL_SYNC" || return 1

    # What the image runs: its console script resolves to an importable function, and its health check.
    local python="$context/app-venv/bin/python"
    test -x "$context/app-venv/bin/nadzu-$SERVICE" || { echo "no nadzu-$SERVICE script"; return 1; }
    "$python" - "$SERVICE" <<'PY' || return 1
import sys
from importlib.metadata import entry_points

name = f"nadzu-{sys.argv[1]}"
(script,) = [point for point in entry_points(group="console_scripts") if point.name == name]
target = script.load()
assert callable(target), f"{name} points at {script.value}, which is not callable"
print(f"{name} -> {script.value}")
PY
    "$python" -m nadzu_common.healthcheck --help >/dev/null 2>&1
    local help_code=$?
    [ "$help_code" = 2 ] || { echo "healthcheck --help exited $help_code, expected 2"; return 1; }
    if [ "$SERVICE" = downloader ]; then
        "$context/app-venv/bin/yt-dlp" --version || return 1
    fi
}
for service in "${SERVICES[@]}"; do
    check "image-$service" emulate_image "$service"
done

healthcheck_live() {
    "$SCRATCH/image-downloader/app-venv/bin/python" "$ROOT/infra/ci/healthcheck_smoke.py" "$TOOLS/bin/nats-server"
}
check image-healthcheck-live healthcheck_live

# Compose.

check compose-schema "$PY" "$CHECKS" compose-schema
check compose-consistency "$PY" "$CHECKS" compose-consistency

# Caddy: the local variant must work on Debian's caddy, the production file on a current release.

production_caddy_env() {
    # shellcheck disable=SC2016 # a bcrypt hash, not an expansion
    env NADZU_DOMAIN=api.example.com ACME_EMAIL=ops@example.com \
        ADMIN_ALLOW_CIDRS="203.0.113.0/24 198.51.100.7/32" \
        ADMIN_PASSWORD_HASH='$2a$14$kzg1bCuhjDhNvjM1LZE/MOVTneDZDYNQGuta8C5IWHjtmdgBXLUn.' "$@"
}
caddy_adapt_checked() {
    local binary=$1 file=$2
    set -o pipefail
    production_caddy_env "$binary" adapt --config "$ROOT/$file" --adapter caddyfile 2>"$SCRATCH/adapt.err" |
        "$PY" "$CHECKS" caddy-adapted "$file"
}
check caddy-validate-local-debian caddy validate --config "$ROOT/infra/caddy/Caddyfile.local" --adapter caddyfile
check caddy-validate-local-current "$TOOLS/bin/caddy" validate --config "$ROOT/infra/caddy/Caddyfile.local" --adapter caddyfile
check caddy-validate-production production_caddy_env "$TOOLS/bin/caddy" validate --config "$ROOT/infra/caddy/Caddyfile" --adapter caddyfile
check caddy-format-production "$TOOLS/bin/caddy" fmt --diff "$ROOT/infra/caddy/Caddyfile"
check caddy-format-local "$TOOLS/bin/caddy" fmt --diff "$ROOT/infra/caddy/Caddyfile.local"
check caddy-adapt-local caddy_adapt_checked caddy infra/caddy/Caddyfile.local
check caddy-adapt-production caddy_adapt_checked "$TOOLS/bin/caddy" infra/caddy/Caddyfile
check caddy-smoke-local-debian python3 "$ROOT/infra/ci/caddy_smoke.py" "$(command -v caddy)" "$ROOT/infra/caddy/Caddyfile.local"
check caddy-smoke-local-current python3 "$ROOT/infra/ci/caddy_smoke.py" "$TOOLS/bin/caddy" "$ROOT/infra/caddy/Caddyfile.local"

# Kubernetes.

k8s_schemas() {
    local overlay
    for overlay in base overlays/production; do
        kubectl kustomize "$ROOT/k8s/$overlay" >"$SCRATCH/rendered.yaml" || return 1
        for version in 1.30.0 1.37.0; do
            # kubernetes-validate only warns about kinds it has no schema for (the ScaledObject, checked next).
            kubernetes-validate --strict --quiet -k "$version" "$SCRATCH/rendered.yaml" || return 1
        done
    done
}
check k8s-schemas k8s_schemas
check k8s-base "$PY" "$CHECKS" k8s-base
check k8s-production "$PY" "$CHECKS" k8s-production
check nats-helm-values "$PY" "$CHECKS" nats-values

# CI/CD, Terraform, scripts, Postman, changelog.

check actionlint actionlint -no-color "$ROOT"/.github/workflows/*.yml
check terraform "$PY" "$CHECKS" terraform
check shellcheck shellcheck "$ROOT"/infra/ci/*.sh "$ROOT/scripts/upgrade-yt-dlp.sh"
check upgrade-yt-dlp-help bash "$ROOT/scripts/upgrade-yt-dlp.sh" --help
check postman "$PY" "$CHECKS" postman
check changelog "$PY" "$CHECKS" changelog

echo "check-deploy: $failures failed in $((SECONDS - started_all)) s"
[ "$failures" -eq 0 ]
