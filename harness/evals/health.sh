#!/usr/bin/env bash
# Aggregate health: harness/evals/health.sh [--json]. Exit 0 only if every part holds.
# A thin wrapper over `cto-harness health`.
set -euo pipefail
harness="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$harness/bin/cto-harness" health --harness-root "$harness" "$@"
