#!/usr/bin/env bash
# One Stage 2 run: harness/evals/run-case.sh <case-id> [--engine fake|case] [--json]
# A thin wrapper over `cto-harness run`; exit codes 0 pass, 1 fail, 2 blocked, 3 error, 64 usage.
set -euo pipefail
harness="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$harness/bin/cto-harness" run --harness-root "$harness" "$@"
