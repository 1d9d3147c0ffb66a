"""Headless Debian chromium (Playwright) on the dashboard's pages and the API's docs page: how
to launch it, where each page is, what marks its main content as shown, and what a page must
not do at 1,400 px. ``tests/test_dashboard_browser.py`` asserts these; ``bench/
dashboard_browser.py`` times them."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from typing import Any

WIDTH = 1400
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Page:
    path: str  # after the server's URL
    ready: str  # Playwright selector of the main content: visible = the page is usable


# The start page shows its table with the row-count caption under it; Monitoring its first
# chart; Predict its form's button.
PAGES = {
    "Experiments": Page("/", "text=/\\d+ of \\d+ rows/"),
    "Monitoring": Page("/monitoring", '[data-testid="stVegaLiteChart"]'),
    "Predict": Page("/predict", 'button:has-text("Predict")'),
}
DOCS = Page("/", ".swagger-ui .opblock-summary")
# A number as a table cell shows it: a value, optionally followed by its delta in brackets.
NUMBER_CELL = re.compile(r"^([+−-]?\d+(?:\.\d+)?)(?: \(([+−-]?\d+(?:\.\d+)?)\))?$")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any) -> Any:
    path = chromium()
    if path is None:
        raise RuntimeError("no chromium: apt-get install chromium (Debian)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


def open_page(
    browser: Any, url: str, page: Page, timeout_ms: float = 180_000, height: int = 1000
) -> tuple[Any, float]:
    """A new 1,400 px browser page at ``url + page.path``, and the seconds from ``goto`` until
    its main content is visible. A tall ``height`` lays out the whole page at once (Streamlit
    skips what is out of view, whose text ``inner_text`` then misses)."""
    view = browser.new_page(viewport={"width": WIDTH, "height": height})
    started = time.perf_counter()
    view.goto(url.rstrip("/") + page.path, wait_until="commit")
    view.locator(page.ready).first.wait_for(state="visible", timeout=timeout_ms)
    return view, time.perf_counter() - started


def horizontal_overflow(view: Any) -> list[str]:
    """What scrolls sideways at this width: the page itself, or a data grid inside it."""
    found = []
    width, client = view.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    if width > client + 1:
        found.append(f"page {width} > {client} px")
    for grid in view.locator('[data-testid="stDataFrame"] .dvn-scroller').all():
        width, client = grid.evaluate("e => [e.scrollWidth, e.clientWidth]")
        if width > client + 1:
            found.append(f"table {width} > {client} px")
    return found


def raw_markdown(view: Any) -> list[str]:
    """Lines of the rendered text that still show Markdown emphasis (``**``)."""
    return [line for line in view.inner_text("body").splitlines() if "**" in line]


def _decimals(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def mixed_decimals(view: Any) -> list[str]:
    """Columns of the page's static tables whose numbers do not all have the same number of
    decimals (cells that are a number, or a number and its delta in brackets)."""
    tables = view.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid="stTable"] table')).map(
            t => Array.from(t.querySelectorAll('tr')).map(
                r => Array.from(r.querySelectorAll('th, td')).map(c => c.innerText.trim())))"""
    )
    problems = []
    for number, rows in enumerate(tables):
        header, body = rows[0], rows[1:]
        for column in range(len(header)):
            decimals = {
                _decimals(part)
                for row in body
                if column < len(row) and (match := NUMBER_CELL.match(row[column]))
                for part in match.groups()
                if part is not None
            }
            if len(decimals) > 1:
                problems.append(f"table {number}, column {header[column]!r}: {sorted(decimals)}")
    return problems
