"""Debian's chromium, headless, driven by Playwright: the console's browser tests and its
screenshots (`make install-browser` installs chromium; Playwright brings no browser)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",  # as root on CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A browser with a fresh profile (Playwright gives each launch its own user-data-dir)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"no browser at {CHROMIUM}: run `make install-browser`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
