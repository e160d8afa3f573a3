#!/usr/bin/env bash
# One Stage 2 run: harness/evals/run-case.sh <case-id> [--engine fake|case] [--json]
# A thin wrapper over `cto-harness run`; exit codes 0 pass, 1 fail, 2 blocked, 3 error, 64 usage.
set -euo pipefail
# Straight to the project's interpreter (what harness/bin/cto-harness runs), without a `dirname`
# process or a second wrapper: every process before Python starts is on the run's clock.
here="${BASH_SOURCE[0]%/*}"
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
harness="$(cd "$here/.." && pwd)"
exec "$harness/bin/python" -m cto_harness run --harness-root "$harness" "$@"
