"""Headless Chromium for the web view's tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's pip package brings its driver but no browser here: it launches the system's
Chromium. Without it the browser tests skip and say why (`.ci/run` installs it as root).
Screenshots go to the test's tmp dir, and also to $QRELEASE_SCREENSHOTS when set, so a
person can look at them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SKIP_REASON = (
    f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium; "
    ".ci/run does this when it runs as root): the browser tests of the web view did not run"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API runs an asyncio loop on the calling thread while
    it is open, and tests that later call `asyncio.run` in the same process (Textual's
    snapshots) would find it running.
    """
    if not CHROMIUM.is_file():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, path: Path) -> Path:
    """A full-page PNG of `page` at `path` (copied to $QRELEASE_SCREENSHOTS when set)."""
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("QRELEASE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path
