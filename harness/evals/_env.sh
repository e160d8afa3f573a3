# Sourced by the harness scripts: run the project's own Python and Bun from the repository.
# shellcheck shell=bash
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -x "$repo_root/.tools/bun/node_modules/.bin/bun" ]; then
  PATH="$repo_root/.tools/bun/node_modules/.bin:$PATH"
fi
if [ -x "$repo_root/.venv/bin/python" ]; then
  harness_python="$repo_root/.venv/bin/python"
else
  harness_python="python3"
  export PYTHONPATH="$repo_root/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PATH
