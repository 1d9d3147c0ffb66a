"""Benchmark: the experiments dashboard as a user sees it, in headless Debian chromium.

    .venv/bin/python bench/dashboard_browser.py [--experiments 30] [--cold 3] [--warm 5]

Measures, in a real browser, the time from opening the page to the experiments table being
visible with every row, on a real DVC repository with ``--experiments`` experiments:

- **cold**: a new ``streamlit run`` server (started and healthy before the clock starts) and
  no stored answer (``.dvc/tmp/dashboard/`` removed), so the page runs ``dvc exp show --json``
  itself; the first cold run is also DVC's first ``exp show`` of the repository (its own
  experiment cache empty). ``--restart`` keeps the stored answer instead: a dashboard
  restarted on an unchanged repository;
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

from baac_severity.testing.experiment_clone import build_repo

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "baac_severity" / "dashboard" / "app.py"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
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


def open_page(browser, url: str, rows: int) -> float:
    """Seconds from ``goto`` to the table showing ``rows`` rows (its row-count caption)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.locator('[data-testid="stDataFrame"]').first.wait_for(state="visible", timeout=180_000)
        page.get_by_text(f"{rows} of {rows} rows").wait_for(timeout=180_000)
        return time.perf_counter() - started
    finally:
        page.close()


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("no chromium: apt-get install chromium (Debian)")
    return found


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
        cold, warm = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
            try:
                for _ in range(args.cold):
                    if not args.restart:
                        shutil.rmtree(repo / ".dvc" / "tmp" / "dashboard", ignore_errors=True)
                    process, url = start_server(repo, Path(tmp) / "streamlit.log")
                    try:
                        cold.append(open_page(browser, url, rows))
                        warm += [open_page(browser, url, rows) for _ in range(args.warm)]
                    finally:
                        stop(process)
            finally:
                browser.close()
    print(
        f"dashboard in headless chromium, 1400 px, {args.experiments} real experiments, page "
        f"opened -> table visible with every row: cold (new server, "
        f"{'stored dvc exp show answer' if args.restart else 'dvc exp show included'}) "
        f"median {statistics.median(cold):.2f} s (runs {', '.join(f'{t:.2f}' for t in cold)}; "
        f"the first is DVC's first exp show); warm (new page) median "
        f"{statistics.median(warm):.2f} s (min {min(warm):.2f}, max {max(warm):.2f}, "
        f"{len(warm)} pages)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
