"""``dvc plots show`` and ``dvc plots diff`` on a clone of this repository, written elsewhere
with ``-o``: each plot once, Vega inlined (no CDN, no path back into the repository), charts
drawn by headless Debian chromium with every network request refused, within 1,400 px; the
confusion matrix with actual classes as rows and the top 20 importances."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from baac_severity.testing import browser as b
from baac_severity.testing.experiment_clone import build_repo
from baac_severity.testing.sandbox import env

# ROC, precision-recall, confusion matrix, feature importance, reliability diagram, ROC-AUC by
# arrival chunk, drift share by arrival chunk (dvc.yaml)
VEGA_PLOTS = 7
TOP_IMPORTANCES = 20


def dvc(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [shutil.which("dvc") or "dvc", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of HEAD (its committed plot files) with two experiment refs."""
    return build_repo(tmp_path_factory.mktemp("plots") / "repo", 2)


@pytest.fixture(scope="module")
def page(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dvc plots show -o`` into a folder outside the repository."""
    out = tmp_path_factory.mktemp("shown")
    dvc("plots", "show", "-o", str(out), cwd=clone)
    return out / "index.html"


@pytest.fixture(scope="module")
def diff_page(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dvc plots diff`` of HEAD and both experiments, outside the repository."""
    out = tmp_path_factory.mktemp("diff")
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    dvc("plots", "diff", "HEAD", *refs, "-o", str(out), cwd=clone)
    return out / "index.html"


def specs(html: str) -> dict[str, dict]:
    """Each Vega-Lite spec of a DVC page, by title."""
    found = {}
    for text in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#", html, re.S):
        spec = json.loads(text)
        title = spec.get("title")
        found[title.get("text") if isinstance(title, dict) else title] = spec
    return found


def test_each_plot_once_in_a_self_contained_page(page: Path) -> None:
    html = page.read_text()
    # The inlined scripts hold "<body>" and "<img" in strings: the page's own head ends last.
    head, body = html[: html.rindex("</head>")], html[html.rindex("</head>") :]
    assert body.count("vegaEmbed('#") == VEGA_PLOTS
    assert body.count("<img") == 1  # plots/importance.png
    # Vega inlined, nothing loaded from elsewhere (the browser test refuses the network too):
    # the page works wherever it is written.
    assert "cdn.jsdelivr.net" not in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=", head)
    # Vega's three scripts (~830 kB) and the data once.
    assert page.stat().st_size < 1_500_000


def test_confusion_actual_as_rows_and_top_importances(page: Path) -> None:
    charts = specs(page.read_text())
    confusion = charts["Confusion matrix (test)"]["spec"]["encoding"]
    assert confusion["y"]["field"] == "actual" and confusion["x"]["field"] == "predicted"
    importance = charts["Feature importance (top 20)"]
    assert {"filter": f"datum.rank <= {TOP_IMPORTANCES}"} in importance["transform"]


@pytest.mark.skipif(b.chromium() is None, reason="Debian chromium not installed")
@pytest.mark.parametrize("which", ["show", "diff"])
def test_charts_render_offline_within_1400_px(page: Path, diff_page: Path, which: str) -> None:
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = b.launch(playwright)
        try:
            view = browser.new_page(viewport={"width": b.WIDTH, "height": 1000})
            errors: list[str] = []
            view.on("pageerror", lambda error: errors.append(str(error)))
            view.route("**/*", only_files)
            view.goto((page if which == "show" else diff_page).as_uri())
            view.wait_for_function(
                f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length"
                f" >= {VEGA_PLOTS}",
                timeout=60_000,
            )
            drawn = view.locator(".vega-embed svg, .vega-embed canvas").count()
            overflow = b.horizontal_overflow(view)
        finally:
            browser.close()
    assert refused == [] and errors == []
    assert drawn >= VEGA_PLOTS
    assert overflow == []
