"""Live monitoring against the real service (the session's ``bentoml serve``): replayed
held-out accidents feed the prediction log, and ``baac monitor`` exits 0
on them (no drift, and their ROC-AUC estimated without labels within 0.02 of the model's test
ROC-AUC) and 1 once the same accidents arrive shifted (night, rain, rural)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baac_severity.cli import app
from baac_severity.config import PROMOTED_METADATA, load_params
from baac_severity.monitoring import prediction_log
from baac_severity.serving.examples import load_tables, request_records, sample_test_split
from baac_severity.serving.replay import replay, shifted

# Enough rows that the estimated ROC-AUC is within 0.02 of the test one (its spread over
# 500-row draws is about 0.01) and the drift tests' noise stays below the limit. A fresh clone
# (CI) serves the small pipeline's model, whose whole test split is about 800 accidents: it is
# replayed whole, so its estimate is compared on the very rows of its test ROC-AUC.
REPLAYED = 2000
FEWEST = 500


def logged_rows(server, since: str) -> int:
    features = json.loads(PROMOTED_METADATA.read_text())["features"]
    return len(prediction_log.read_rows(server.prediction_log, features, None, since))


def replay_and_monitor(server, keys, records, tmp_path: Path, name: str) -> tuple[int, dict]:
    """Send ``records``, wait until the log holds them, run ``baac monitor`` on them."""
    since = datetime.now().isoformat()  # the log's timestamps: BentoML's, local time
    assert replay(records, server.url, keys[0], batch=50) == len(records)
    deadline = time.monotonic() + 30
    while logged_rows(server, since) < len(records) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged_rows(server, since) == len(records)
    out = tmp_path / name
    argv = ["--log-dir", str(server.prediction_log), "--since", since, "--report-dir", str(out)]
    result = CliRunner().invoke(app, ["monitor", *argv], catch_exceptions=False)
    sys.stdout.write(result.stdout)  # for pytest's capture, as the command printed it
    status = result.exit_code
    return status, json.loads((out / "drift.json").read_text())


@pytest.fixture(scope="module")
def held_out(workspace) -> list[dict]:
    """Up to REPLAYED real test-split accidents of the served model's workspace, as request
    records."""
    keys = sample_test_split(REPLAYED, dataset=workspace / "data/processed/dataset.parquet")
    assert len(keys) >= FEWEST, f"only {len(keys)} test accidents in {workspace}"
    return request_records(load_tables(workspace / "data" / "chunks"), keys)


def test_the_live_log_feeds_a_report_and_make_monitor_flags_shifted_traffic(
    server, keys, workspace, held_out, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(workspace)  # the promoted model and its training data
    params = load_params().monitor
    limit = float(params.max_share_drifted)

    status, clean = replay_and_monitor(server, keys, held_out, tmp_path, "clean")
    printed = capsys.readouterr().out
    assert clean["rows"] == len(held_out)
    assert clean["share_drifted"] <= limit and status == 0, printed
    # Held-out accidents are the test split's own: the estimate matches the test ROC-AUC.
    assert abs(clean["estimated_roc_auc"] - clean["test_roc_auc"]) <= 0.02, printed
    assert clean["max_estimated_drop"] == float(params.max_estimated_drop)
    assert "estimate ok: estimated ROC-AUC" in printed
    assert f"report {tmp_path / 'clean' / 'drift.html'}" in printed
    assert (tmp_path / "clean" / "drift.html").read_text().count("<tr") > 10

    night_rain_rural = shifted([dict(r) for r in held_out], ["night", "rain", "rural"])
    status, drifted = replay_and_monitor(server, keys, night_rain_rural, tmp_path, "shifted")
    assert drifted["share_drifted"] > limit and status == 1
    assert {"lum", "atm", "agg", "hour"} <= set(drifted["drifted"])
