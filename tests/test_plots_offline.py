"""``dvc plots show`` on a clone of this repository: each plot once, a small page, and Vega
charts drawn by headless Debian chromium with every network request refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from baac_severity.config import ROOT
from baac_severity.testing.sandbox import env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# ROC, precision-recall, confusion matrix, feature importance, reliability diagram, ROC-AUC by
# arrival chunk, drift share by arrival chunk (dvc.yaml)
VEGA_PLOTS = 7


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dvc plots show`` in a clone of HEAD (its committed plot files), default settings."""
    clone = tmp_path_factory.mktemp("plots") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    done = subprocess.run(
        [shutil.which("dvc") or "dvc", "plots", "show"],
        cwd=clone,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return clone / "dvc_plots" / "index.html"


def test_each_plot_once_in_a_small_page_without_cdn(page: Path) -> None:
    html = page.read_text()
    assert html.count("vegaEmbed(") == VEGA_PLOTS
    assert html.count("<img") == 1  # plots/importance.png
    assert "cdn.jsdelivr.net" not in html and "https://" not in html.split("<body>")[0]
    assert page.stat().st_size < 500_000


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian chromium not installed")
def test_charts_render_offline(page: Path) -> None:
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        try:
            view = browser.new_page()
            errors: list[str] = []
            view.on("pageerror", lambda error: errors.append(str(error)))
            view.route("**/*", only_files)
            view.goto(page.as_uri())
            charts = view.locator(".vega-embed svg, .vega-embed canvas")
            view.wait_for_function(
                f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length"
                f" >= {VEGA_PLOTS}",
                timeout=30_000,
            )
            drawn = charts.count()
        finally:
            browser.close()
    assert refused == [] and errors == []
    assert drawn >= VEGA_PLOTS
