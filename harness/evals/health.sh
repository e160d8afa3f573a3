#!/usr/bin/env bash
# Aggregate health: harness/evals/health.sh [--json]. Exit 0 only if every part holds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$harness_python" -m cto_harness health --harness-root "$repo_root/harness" "$@"
