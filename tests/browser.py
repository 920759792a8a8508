"""Headless Chromium driven by Playwright, for browser tests.

Chromium is Debian's (`scripts/sysdeps.sh` installs it), launched by Playwright's Python
package with ``executable_path``: no browser is downloaded (never `playwright install`).
``Browser`` keeps the interface the tests had with the former DevTools-protocol driver:
``start_eval`` starts a page promise and returns at once (the test then acts on the
server), ``result`` waits for it, ``evaluate`` does both.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_binary() -> str:
    binary = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):  # `make test` installs it: never skip in CI
            pytest.fail("chromium not installed in CI (scripts/sysdeps.sh should install it)")
        pytest.skip("chromium not installed (run: bash scripts/sysdeps.sh)")
    return binary


class Browser:
    """One headless Chromium this test started, with one context and page."""

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        """``extra_args``: more Chromium flags (e.g. ``--ignore-certificate-errors-spki-list``)."""
        binary = chromium_binary()
        self._playwright: Playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(
                executable_path=binary, headless=True, args=[*ARGS, *extra_args]
            )
        except Exception:
            self._playwright.stop()
            raise
        self.context: BrowserContext = self.browser.new_context()
        self.page: Page = self.context.new_page()
        self._ids = itertools.count(1)

    def new_page(self, context: BrowserContext | None = None) -> Page:
        """Another page, in a new context (its own cookies and storage) unless one is given."""
        return (context or self.browser.new_context()).new_page()

    def start_eval(self, expression: str, page: Page | None = None) -> int:
        """Start evaluating ``expression`` (a promise) in the page; collect it with ``result``."""
        rid = next(self._ids)
        (page or self.page).evaluate(
            "([rid, source]) => { (window.__results ??= {})[rid] = "
            "Promise.resolve().then(() => (0, eval)(source)); }",
            [rid, expression],
        )
        return rid

    def result(self, rid: int, timeout: float = 20.0, page: Page | None = None) -> Any:
        """The value of ``start_eval``'s promise ``rid``; AssertionError on a page error or
        after ``timeout`` seconds."""
        try:
            return (page or self.page).evaluate(
                "([rid, ms]) => Promise.race([window.__results[rid], new Promise((_, reject) =>"
                " setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms))])",
                [rid, int(timeout * 1000)],
            )
        except Exception as exc:  # playwright's Error: the page threw or rejected
            raise AssertionError(f"page error: {exc}") from exc

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        """Load ``url`` in the page (its cookies are then the page's) and wait until the
        new document has loaded."""
        self.page.goto(url, timeout=timeout * 1000, wait_until="load")

    def evaluate(self, expression: str, timeout: float = 20.0, page: Page | None = None) -> Any:
        return self.result(self.start_eval(expression, page), timeout, page)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()


def js(value: Any) -> str:
    """``value`` as a JavaScript literal."""
    return json.dumps(value)
