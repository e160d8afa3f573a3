#!/usr/bin/env python3
"""Regenerate the README's screenshots of the viewer: `.venv/bin/python tools/viewer_screenshots.py`.

Runs a small real suite with the fake engine in a temporary home (the shipped cases, plus a copy
of r1-string-slugify whose fake solution is wrong, so the pages show a failure), renders it with
`cto-harness view`, and photographs the suite page and a failing run page in the system's
Chromium (headless, through Playwright) into docs/img/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

WRONG = ('def slugify(value: str) -> str:\n'
         '    """Return a lowercase, hyphen-separated slug for ``value``."""\n'
         '    return value.strip().lower().replace(" ", "-")\n')
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _harness_with_a_wrong_case(target: Path) -> Path:
    root = target / "harness"
    shutil.copytree(REPO_ROOT / "harness", root)
    case = root / "evals" / "cases" / "r4-slugify-naive"
    shutil.copytree(root / "evals" / "cases" / "r1-string-slugify", case)
    toml = case / "case.toml"
    toml.write_text(toml.read_text().replace('id = "r1-string-slugify"',
                                             'id = "r4-slugify-naive"'))
    (case / "fake" / "solution" / "slugkit" / "text.py").write_text(WRONG)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "img"),
                        help="where the PNGs go (default: docs/img)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per case (default 3)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no Chromium found: make system-packages installs it", file=sys.stderr)
        return 1
    out = Path(args.out).absolute()
    with tempfile.TemporaryDirectory(prefix="cto-harness-shots-") as scratch:
        work = Path(scratch)
        os.environ["CTO_HARNESS_HOME"] = str(work / "home")
        os.environ["CTO_HARNESS_RUNS_DIR"] = str(work / "home" / "harness-runs")
        from cto_harness.core.fixtures import list_case_ids
        from cto_harness.core.suite import run_suite
        from cto_harness.viewer.site import build_site

        os.chdir(work)  # the pages show folders relative to it: no machine path in the images
        root = _harness_with_a_wrong_case(work)
        print("running the suite…", file=sys.stderr)
        run_suite(list_case_ids(root), harness_root=root, repeat=args.repeat, jobs=2,
                  suite_dir=work / "suite", progress=None)
        site = build_site([work / "suite"], work / "view" / "suite.html")
        failing = next(p for p in site.pages if "run-" in p.name and "FAIL" in p.read_text()
                       and "r4-slugify-naive" in p.read_text())
        out.mkdir(parents=True, exist_ok=True)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(site.main.as_uri())
            page.screenshot(path=str(out / "suite-page.png"), full_page=True)
            page.goto(failing.as_uri())
            page.screenshot(path=str(out / "run-page.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": 2200})
            browser.close()
        for name in ("suite-page.png", "run-page.png"):
            print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
