"""The browser the tests drive: Debian's Chromium through Playwright's Python package.

Without Playwright or Chromium a test skips, unless XSCAN_REQUIRE_BROWSER=1 (set by .ci/run),
where their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("XSCAN_REQUIRE_BROWSER") == "1"


def need_browser():
    """Playwright's `sync_playwright`, once Playwright and Chromium are found.

    Returns:
        `playwright.sync_api.sync_playwright`, to launch CHROMIUM with.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("playwright is not installed (pip install '.[test]')")
    if not Path(CHROMIUM).is_file():
        if REQUIRED:
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return sync_playwright
