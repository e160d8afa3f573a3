#!/usr/bin/env python3
"""Route-record validator: `python3 tools/validate_cto_child.py [--json] [--route-dir DIR]`.

A thin wrapper over `cto-harness validate routes` (its `--help` says more), run under the
project's own interpreter (harness/bin/python), on this repository's docs/route by default.
Exit 0 when every record holds; otherwise 1, naming each violation with file and line.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = str(REPO / "harness" / "bin" / "cto-harness")

if __name__ == "__main__":
    os.execv(LAUNCHER, [LAUNCHER, "validate", "routes", "--route-dir", str(REPO / "docs" / "route"),
                        *sys.argv[1:]])
