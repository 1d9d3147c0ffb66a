"""Benchmark: first-render time of the experiments dashboard with 30 experiments.

    .venv/bin/python bench/dashboard.py [--experiments 30] [--runs 7]

The ``dvc exp show`` call is excluded: the page reads a synthetic answer built from the
recorded fixture ``tests/fixtures/exp_show/success_failed.json`` (its baseline and one
successful experiment cloned 30 times with varied params and metrics), through
``$BAAC_DASHBOARD_EXP_SHOW``. Every experiment points at this repository's HEAD, so the ROC,
precision-recall, confusion (one row per test accident) and importance files of the compared
experiments are real ``git show`` reads (each experiment's rev is a distinct abbreviation of
HEAD, so nothing is shared through the cache). A "first render" is one script run of a fresh
``AppTest`` after ``st.cache_data.clear()``: parse, table, best experiment, comparison charts,
progress panel and form, server side (the browser's drawing is not included). The median of
``--runs`` renders is printed, plus the cold first run (imports) and a cached rerun.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

FIXTURE = ROOT / "tests" / "fixtures" / "exp_show" / "success_failed.json"
DASHBOARD = ROOT / "baac_severity" / "dashboard" / "app.py"


def synthetic_exp_show(count: int, head: str) -> list[dict]:
    """The recorded answer with ``count`` successful experiments on one baseline."""
    records = json.loads(FIXTURE.read_text())
    baseline = next(r for r in records if r.get("rev") != "workspace")
    template = next(
        e for e in baseline["experiments"] if (e.get("executor") or {}).get("state") == "success"
    )
    baseline["rev"] = baseline["data"]["rev"] = head
    experiments = []
    for i in range(count):
        experiment = copy.deepcopy(template)
        revision = experiment["revs"][0]
        revision["name"] = experiment["name"] = f"exp-{i:02d}"
        # Distinct abbreviations of HEAD: distinct revs, each with real plot files to read.
        revision["rev"] = revision["data"]["rev"] = head[: 8 + i]
        params = revision["data"]["params"]["params.yaml"]["data"]["model"]
        params.update(n_estimators=50 * (1 + i % 6), min_samples_leaf=5 * (1 + i // 6))
        test = revision["data"]["metrics"]["metrics/train.json"]["data"]["test"]
        for key in ("roc_auc", "pr_auc", "accuracy", "f1_weighted", "f1_macro"):
            test[key] = round(test[key] + 0.002 * ((i * 7) % 11 - 5), 6)
        experiments.append(experiment)
    baseline["experiments"] = experiments
    return records


def render_once(clear: bool = True) -> float:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear:
        st.cache_data.clear()
    app = AppTest.from_file(str(DASHBOARD), default_timeout=120)
    start = time.perf_counter()
    app.run()
    elapsed = time.perf_counter() - start
    if app.exception:
        raise SystemExit(f"the page raised: {app.exception[0].value}")
    rows = len(app.dataframe[0].value)
    if rows < 30:
        raise SystemExit(f"the table shows {rows} rows, expected at least 30")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30, help="at most 32")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        answer = Path(tmp) / "exp_show.json"
        answer.write_text(json.dumps(synthetic_exp_show(args.experiments, head)))
        os.environ.update(BAAC_DASHBOARD_EXP_SHOW=str(answer), BAAC_DASHBOARD_REPO=str(ROOT))
        cold = render_once()
        times = [render_once() for _ in range(args.runs)]
        cached = render_once(clear=False)
    median = statistics.median(times)
    print(
        f"dashboard first render, {args.experiments} experiments (synthetic exp show, no dvc "
        f"call): median {median:.2f} s over {args.runs} runs "
        f"(min {min(times):.2f}, max {max(times):.2f}); cold start with imports {cold:.2f} s; "
        f"cached rerun {cached:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
