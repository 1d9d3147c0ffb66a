"""Benchmark: the dashboard's pages as a user sees them, in headless Debian chromium.

    .venv/bin/python bench/dashboard_browser.py [--experiments 30] [--cold 3] [--warm 5]

Measures, in a real browser at 1,400 px, the time from opening each page (Experiments,
Monitoring, Predict) to its main content being visible (``baac_severity/testing/browser.py``;
Experiments: the table with every row), on a real DVC repository with ``--experiments``
experiments. Goals: cold <= 8 s, warm <= 3 s.

- **cold**: each page's first visit on a new ``streamlit run`` server (started and healthy
  before the clock starts; Experiments first) and no stored answer (``.dvc/tmp/dashboard/``
  removed), so the Experiments page runs ``dvc exp show --json`` itself; the first cold
  run is also DVC's first ``exp show`` of the repository (its own experiment cache empty).
  ``--restart`` keeps the stored answer instead: a dashboard restarted on an unchanged repository;
- **warm**: a new browser page on the running server (the parsed table is cached per
  repository state).

The repository is a local ``git clone`` of this one's HEAD with its committed metrics and plot
files, and 30 experiment commits with other params and metrics (see ``build_repo``; no
training: the page reads params, metrics and plot files, not models): ``dvc exp show`` walks
30 experiment refs as it would after ``make sweep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from baac_severity.config import ROOT
from baac_severity.testing import browser as browser_rig
from baac_severity.testing.experiment_clone import build_repo

DASHBOARD = ROOT / "baac_severity" / "dashboard" / "app.py"
QUIET = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(repo: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    command += ["--server.fileWatcherType", "none"]
    variables = {**os.environ, **QUIET, "BAAC_DASHBOARD_REPO": str(repo)}
    variables.pop("BAAC_DASHBOARD_EXP_SHOW", None)
    with log.open("a") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=variables, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"streamlit did not answer at {url}; see {log}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def open_page(browser, url: str, name: str, rows: int) -> float:
    """Seconds from ``goto`` to the page's main content visible (``testing.browser.PAGES``);
    for Experiments, the table showing all ``rows`` rows (its row-count caption)."""
    target = browser_rig.PAGES[name]
    page = browser.new_page(viewport={"width": browser_rig.WIDTH, "height": 1000})
    try:
        started = time.perf_counter()
        page.goto(url + target.path, wait_until="commit")
        page.locator(target.ready).first.wait_for(state="visible", timeout=180_000)
        if name == "Experiments":
            page.get_by_text(f"{rows} of {rows} rows").wait_for(timeout=180_000)
        return time.perf_counter() - started
    finally:
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--cold", type=int, default=3, help="new servers")
    parser.add_argument("--warm", type=int, default=5, help="new pages per server")
    parser.add_argument(
        "--restart", action="store_true", help="keep the stored dvc exp show answer"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rows = args.experiments + 2  # + workspace and the baseline
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        repo = build_repo(Path(tmp) / "repo", args.experiments)
        print(
            f"repository with {args.experiments} experiments built in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        cold: dict[str, list[float]] = {name: [] for name in browser_rig.PAGES}
        warm: dict[str, list[float]] = {name: [] for name in browser_rig.PAGES}
        with sync_playwright() as playwright:
            browser = browser_rig.launch(playwright)
            try:
                for _ in range(args.cold):
                    if not args.restart:
                        shutil.rmtree(repo / ".dvc" / "tmp" / "dashboard", ignore_errors=True)
                    process, url = start_server(repo, Path(tmp) / "streamlit.log")
                    try:
                        # Each page's first visit on a new server, Experiments first (it runs
                        # dvc exp show), then new pages on the running server.
                        for name in browser_rig.PAGES:
                            cold[name].append(open_page(browser, url, name, rows))
                        for _ in range(args.warm):
                            for name in browser_rig.PAGES:
                                warm[name].append(open_page(browser, url, name, rows))
                    finally:
                        stop(process)
            finally:
                browser.close()
    answer = "stored dvc exp show answer" if args.restart else "dvc exp show included"
    print(
        f"dashboard in headless chromium, 1400 px, {args.experiments} real experiments; page "
        f"opened -> main content visible (Experiments: the table with every row). cold: first "
        f"visit on a new server ({answer} for Experiments), goal <= 8 s; warm: a new page on "
        f"the running server, goal <= 3 s"
    )
    print("| page | cold median | cold runs | warm median | warm min-max (pages) |")
    print("|---|---|---|---|---|")
    for name in browser_rig.PAGES:
        runs, again = cold[name], warm[name]
        print(
            f"| {name} | {statistics.median(runs):.2f} s | "
            f"{', '.join(f'{t:.2f}' for t in runs)} | {statistics.median(again):.2f} s | "
            f"{min(again):.2f}-{max(again):.2f} ({len(again)}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
