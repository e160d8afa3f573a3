"""A real Chromium driven by Playwright, for the viewer's pages (tests/viewer/ and the Case
engine's pages in tests/case/): skipped with its reason only where no Chromium is found (CI
requires one: CTO_HARNESS_REQUIRE_CHROMIUM=1). Fixtures: `browser`, `tab`, `screenshots`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def find_chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None and os.environ.get("CTO_HARNESS_REQUIRE_CHROMIUM") == "1":
        pytest.fail("CTO_HARNESS_REQUIRE_CHROMIUM=1 but no Chromium was found")
    if executable is None:
        pytest.skip("no Chromium on this machine (make system-packages installs the Debian "
                    "package chromium)")
    from playwright.sync_api import expect, sync_playwright

    # Generous waits: every expectation waits on the page's state, and a loaded machine is slow.
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots are test artifacts: pytest's own temporary folder (the last runs are kept)."""
    return tmp_path_factory.mktemp("screenshots")


@dataclass
class Tab:
    """A page in a fresh browser context, with every console error, page error and attempted
    network request (anything but the page's own file or loopback server) recorded."""

    page: Any
    problems: list[str]


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []

    def route(handle: Any) -> None:
        url = handle.request.url
        if url.startswith(("file://", "http://127.0.0.1:")):
            handle.continue_()
        else:
            problems.append(f"network request: {url}")
            handle.abort()

    context.route("**/*", route)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    yield Tab(page, problems)
    context.close()
