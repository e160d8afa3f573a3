#!/usr/bin/env python3
"""Adapter validator:

    python3 harness/runner/validate-case-provider-adapter.py --harness-root harness --json

A thin wrapper over `cto-harness validate adapter` (its `--help` says more), run under the
project's own interpreter (harness/bin/python). Exit 0 only if every check passes.
"""

import os
import sys
from pathlib import Path

LAUNCHER = str(Path(__file__).resolve().parents[1] / "bin" / "cto-harness")

if __name__ == "__main__":
    os.execv(LAUNCHER, [LAUNCHER, "validate", "adapter", *sys.argv[1:]])
