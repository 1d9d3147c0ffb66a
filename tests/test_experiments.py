"""Real DVC experiments end to end: parser, dashboard (AppTest and a headless browser), review.

One throwaway repository for the module (``tests/exp_repo.experiment_repo``, ~1.5 min): the
small pipeline reproduced and committed on ``main``, then three experiments with different
params, one run in the workspace and two through ``dvc exp run --queue`` + ``dvc queue start``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from baac_severity.config import ROOT
from baac_severity.decisions import experiments as ex
from baac_severity.testing.browser import CHROMIUM_ARGS
from baac_severity.testing.local_service import free_port, stop_process
from baac_severity.testing.sandbox import env
from tests.exp_repo import QUEUED_EXPERIMENTS, WORKSPACE_EXPERIMENT, experiment_repo

pytestmark = pytest.mark.slow

DASHBOARD = ROOT / "baac_severity" / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
EXPECTED = {
    WORKSPACE_EXPERIMENT[0]: "model.n_estimators=10",
    QUEUED_EXPERIMENTS[0][0]: "model.max_depth=8",
    QUEUED_EXPERIMENTS[1][0]: "model.min_samples_leaf=30",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Iterating on these tests: $BAAC_TEST_EXPERIMENT_REPO reuses a repository built before
    # (python -c "from tests.exp_repo import experiment_repo; ...") instead of a new one.
    reused = os.environ.get("BAAC_TEST_EXPERIMENT_REPO")
    if reused:
        return Path(reused)
    return experiment_repo(tmp_path_factory.mktemp("experiments"), workers=2)


def test_parser_returns_the_real_experiments(repo: Path) -> None:
    frame = ex.load_experiments(repo)
    finished = frame[frame["state"] == "success"].set_index("experiment")
    assert set(finished.index) == set(EXPECTED)
    for name, changed in EXPECTED.items():
        assert finished.loc[name, "changed_params"] == changed
        assert 0.5 < finished.loc[name, "test.roc_auc"] < 1
        assert finished.loc[name, "chunks_ingested"] == 2
        assert finished.loc[name, "baseline"] == "main"
    assert finished["test.roc_auc"].nunique() == len(EXPECTED)
    # The queued ones ran in a dvc-task executor; the workspace one has none.
    assert finished.loc[WORKSPACE_EXPERIMENT[0], "executor"] is None
    assert finished.loc[QUEUED_EXPERIMENTS[0][0], "executor"] == "dvc-task"


def test_dashboard_renders_every_experiment(repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(repo))
    monkeypatch.delenv("BAAC_DASHBOARD_EXP_SHOW", raising=False)
    at = AppTest.from_file(str(DASHBOARD), default_timeout=120)
    at.run()
    assert not at.exception
    assert not [w.value for w in at.warning if "Could not render" in w.value]
    table = at.dataframe[0].value.set_index("experiment")
    assert set(EXPECTED) | {"main", "workspace"} <= set(table.index)
    assert table.loc[list(EXPECTED), "test.roc_auc"].notna().all()
    # metrics/scores.json is not a DVC metric: its scores come from each experiment's commit.
    assert table.loc[list(EXPECTED), "test.f1_macro"].notna().all()
    # The workspace has no creation time: an empty cell (the grid shows a missing time as None).
    assert table.loc["workspace", "created"] == ""
    assert table.loc[list(EXPECTED), "created"].str.match(r"\d{4}-\d\d-\d\d \d\d:\d\d$").all()
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 3  # bar chart, ROC, precision-recall (+ confusion, importance)
    # Refresh clears the cache and renders again.
    at.sidebar.button[0].click().run()
    assert not at.exception


def test_restarted_page_reads_the_stored_answer(repo: Path, monkeypatch) -> None:
    """A new server (empty memory cache) on an unchanged repository runs no ``dvc exp show``:
    the answer of that repository state was kept on disk by the first page."""
    import streamlit as st

    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(repo))
    monkeypatch.delenv("BAAC_DASHBOARD_EXP_SHOW", raising=False)
    AppTest.from_file(str(DASHBOARD), default_timeout=120).run()
    stored = list((repo / ".dvc" / "tmp" / "dashboard").glob("exp-show-*.json"))
    assert [p.name for p in stored] == [f"exp-show-{ex.repo_state(repo)}.json"]
    st.cache_data.clear()

    def no_dvc(*args: object, **kwargs: object) -> list[dict]:
        raise AssertionError("dvc exp show ran although the answer was stored")

    monkeypatch.setattr(ex, "run_exp_show", no_dvc)
    at = AppTest.from_file(str(DASHBOARD), default_timeout=120)
    at.run()
    assert not at.exception
    assert set(EXPECTED) <= set(at.dataframe[0].value["experiment"])


def test_review_reports_metric_deltas(repo: Path, tmp_path: Path) -> None:
    names = [WORKSPACE_EXPERIMENT[0], QUEUED_EXPERIMENTS[0][0]]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "baac_severity.cli",
            "review",
            *names,
            "--baseline",
            "main",
            "--repo",
            repo,
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report_path = repo / "reports" / f"review-main-vs-{'-'.join(names)}.md"
    text = report_path.read_text()
    assert done.stdout.strip() == text.strip()
    report = re.sub(r" {2,}", " ", text)  # tabulate pads the cells: compare words
    assert report.startswith(f"# Experiment review: {', '.join(names)} vs main")
    assert "| experiment | state | test.roc_auc | test.f1_weighted |" in report
    baseline_line = next(line for line in report.splitlines() if "(baseline)" in line)
    assert "**main**" in baseline_line
    for name in names:
        line = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        cells = line.split("|")[3:-1]
        assert all("(+" in cell or "(-" in cell for cell in cells), line
    assert "| exp-trees10 | model.n_estimators | 20 | 10 |" in report
    assert "| exp-depth8 | model.max_depth | – | 8 |" in report
    assert "## Data snapshot" in report and "chunks_ingested" in report
    for kind in ("roc", "pr", "importance"):
        image = f"review-main-vs-{'-'.join(names)}-{kind}.png"
        assert f"]({image})" in report
        assert (report_path.parent / image).stat().st_size > 1000
    assert "dvc plots diff main " in report
    # Ranked on validation with main competing; a promote command only for a winner.
    assert "## Ranking" in report and "Ranked on **validation.roc_auc**" in report
    best = report.split("## Best")[1].split("##")[0]
    assert ("No experiment beats main" in best) != ("make promote EXP=" in best), best
    assert "dvc exp apply" not in report
    assert report.count("95% percentile intervals of") == len(names)


# --- a real browser ------------------------------------------------------------------------


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit not healthy at {url} after {timeout} s")


@pytest.fixture
def dashboard_url(repo: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    variables = {**env(), "BAAC_DASHBOARD_REPO": str(repo)}
    variables.pop("BAAC_DASHBOARD_EXP_SHOW", None)
    command = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    command += ["--server.fileWatcherType", "none"]
    with (tmp_path / "streamlit.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=variables, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        stop_process(process, timeout=20)


@pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")),
    reason=f"Debian chromium not installed at {CHROMIUM} (.ci/run installs it)",
)
def test_browser_shows_table_and_comparison_chart(dashboard_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # 1,400 px: the experiments table must fit, headline metrics and changed params in
            # view without horizontal scrolling (issue 11).
            page = browser.new_page(viewport={"width": 1400, "height": 4200})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            table = page.locator('[data-testid="stDataFrame"]').first
            table.wait_for(state="visible", timeout=120_000)
            page.get_by_text(f"{len(EXPECTED) + 2} of").first.wait_for(timeout=60_000)
            scroller = table.locator(".dvn-scroller").first
            widths = scroller.evaluate("e => [e.scrollWidth, e.clientWidth]")
            page.get_by_text("Compare experiments").wait_for(timeout=60_000)
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            chart.wait_for(state="visible", timeout=60_000)
            chart.scroll_into_view_if_needed()
            page.get_by_text("Ranked on validation.roc_auc").wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert chart.bounding_box()["height"] > 100
            assert table.bounding_box()["height"] > 100
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "Could not render" not in text
    assert widths[0] <= widths[1] + 1, f"table scrolls horizontally: {widths}"
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
