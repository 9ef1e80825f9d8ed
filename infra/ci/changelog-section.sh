#!/usr/bin/env bash
# Print the CHANGELOG.md section of one release, for its GitHub release notes:
#
#   bash infra/ci/changelog-section.sh v0.1.0
#
# The section starts at the heading "## [0.1.0] - DATE" and ends before the next "## [" heading.
# Exits 1 when CHANGELOG.md has no such section or the section is empty. CHANGELOG_FILE names another
# file to read.

set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: changelog-section.sh vX.Y.Z" >&2
    exit 2
fi
version=${1#v}
changelog=${CHANGELOG_FILE:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/CHANGELOG.md"}

section=$(awk -v version="$version" '
    index($0, "## [" version "]") == 1 { found = 1; next }
    found && /^## \[/ { exit }
    found { print }
' "$changelog")

if [ -z "$(printf '%s' "$section" | tr -d '[:space:]')" ]; then
    echo "CHANGELOG.md has no notes for version $version: add a section '## [$version] - YYYY-MM-DD'" >&2
    exit 1
fi
printf '%s\n' "$section" | sed -e '/./,$!d'
