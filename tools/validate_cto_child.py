#!/usr/bin/env python3
"""Route-record validator: `python3 tools/validate_cto_child.py [--json] [--route-dir DIR]`.

Checks docs/route/*.md front matter, work-item ids and evidence claims. Exit 0 when every record
holds; otherwise 1, naming each violation with file and line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
    # Run under the project's own environment (this script may be started with any python3).
    os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO / "src"))

from cto_harness.cli.routes import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_route_dir=REPO / "docs" / "route"))
