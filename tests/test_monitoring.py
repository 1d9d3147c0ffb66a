"""Monitoring without a server: calibration error, the drift tests on real BAAC rows, the drift
of the bundled chunks, and the dashboard's Monitoring page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import distance
from streamlit.testing.v1 import AppTest

from baac_severity.config import DATASET, ROOT
from baac_severity.features import ACCIDENT, GROUPS, build_features, feature_names
from baac_severity.modeling import evaluate
from baac_severity.monitoring import drift
from baac_severity.testing.sandbox import dvc, make_pipeline_repo

ONLY_2024 = {"day_of_week", "col", "dep_code", "vma", "min_age", "share_protected"}


def test_calibration_error_is_the_weighted_gap_per_bin():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    calibrated = rng.random(p.size) < p
    assert evaluate.expected_calibration_error(calibrated, p) < 0.01
    # Every row says 0.9 for a coin flip: one bin, gap 0.4.
    coin = np.arange(1000) % 2
    assert evaluate.expected_calibration_error(coin, np.full(1000, 0.9)) == pytest.approx(0.4)
    # Two bins of 500 rows, gaps 0.1 and 0.3.
    p = np.r_[np.full(500, 0.1), np.full(500, 0.7)]
    y = np.r_[np.arange(500) < 100, np.arange(500) < 500]
    assert evaluate.expected_calibration_error(y, p) == pytest.approx(0.5 * 0.1 + 0.5 * 0.3)


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real processed dataset (all bundled data, 12 chunks) and its model features: the
    workspace's pipeline output, else (a fresh clone) built by a real `dvc repro split`."""
    path = ROOT / DATASET
    if not path.is_file():
        if not (ROOT / "data" / "raw").is_dir():
            pytest.skip("no data/raw: run `make data`")
        repo = make_pipeline_repo(tmp_path_factory.mktemp("bundled"), overrides=[])
        dvc("repro", "-q", "split", cwd=repo)
        path = repo / DATASET
    dataset = pd.read_parquet(path)
    return dataset, build_features(dataset, GROUPS)[feature_names(ACCIDENT, GROUPS)]


def test_drift_tests_on_real_rows_follow_evidentlys_defaults(real):
    dataset, features = real
    chunk = dataset["arrival_chunk"].to_numpy()
    reference, current = features[chunk == 1], features[chunk == 7]
    report = drift.compare(
        reference, current, title="1 vs 7", reference_label="chunk 1", current_label="chunk 7"
    )
    by_name = {f.feature: f for f in report.features}
    # Large reference: a distance per feature. Jensen-Shannon for a code, recomputed here from
    # the value shares; normed Wasserstein for a measure with many values.
    lum = by_name["lum"]
    assert (lum.test, lum.threshold) == ("jensen_shannon", 0.1)
    ref_shares = reference["lum"].value_counts(normalize=True)
    cur_shares = current["lum"].value_counts(normalize=True)
    codes = sorted(set(ref_shares.index) | set(cur_shares.index))
    expected = distance.jensenshannon(
        ref_shares.reindex(codes, fill_value=0), cur_shares.reindex(codes, fill_value=0)
    )
    assert lum.statistic == pytest.approx(expected, abs=1e-6)
    assert by_name["lat"].test == "wasserstein_normed"
    # 2024-only features have no value in chunk 1: they appeared (drift by definition).
    for name in ONLY_2024:
        assert (by_name[name].test, by_name[name].drifted) == ("appeared", True)
    # A small reference switches to p-value tests.
    small = drift.compare(
        reference.iloc[:800], current.iloc[:800], title="", reference_label="", current_label=""
    )
    tests = {f.feature: f.test for f in small.features}
    assert tests["lat"] == "kolmogorov_smirnov" and tests["lum"] == "chi_squared"
    assert tests["agg"] == "z_test"


def test_the_first_2024_chunks_drift_most_on_the_bundled_data(real):
    dataset, _ = real
    if dataset["arrival_chunk"].max() < 8 or set(dataset["an"]) != {2018, 2024}:
        pytest.skip("needs the bundled 2018 + 2024 data in 12 chunks")
    reports = dict(drift.chunk_reports(dataset, GROUPS, 2))
    shares = {k: r.share_drifted for k, r in reports.items()}
    years = dataset.groupby("arrival_chunk")["an"].unique()
    only_2018 = [k for k in shares if set(years[k]) == {2018}]
    first_2024 = min(k for k in shares if k not in only_2018)
    # Chunk 6 holds the first 2024 accidents: every 2024-only feature appears there.
    assert max(shares, key=shares.get) == first_2024
    appeared = {f.feature for f in reports[first_2024].features if f.test == "appeared"}
    assert appeared >= ONLY_2024
    # Chunk 7, the first chunk made only of 2024 accidents, drifts more than any 2018 chunk.
    assert shares[first_2024 + 1] > max(shares[k] for k in only_2018)
    html = drift.render_html(reports[first_2024])
    assert "day_of_week" in html and "appeared" in html


def test_monitoring_page_renders_the_workspace_figures(monkeypatch):
    if not (ROOT / "metrics" / "out_of_time.json").is_file():
        pytest.skip("no out-of-time metrics in the workspace")
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(ROOT))
    at = AppTest.from_file(
        str(ROOT / "baac_severity" / "dashboard" / "views" / "monitoring.py"), default_timeout=60
    )
    at.run()
    assert not at.exception
    titles = [s.value for s in at.subheader]
    assert titles == [
        "ROC-AUC by arrival chunk",
        "Drift share per arrival chunk",
        "Live drift of the service log",
    ]
    labels = {m.label: m.value for m in at.metric}
    assert labels["2018 → 2024 transfer ROC-AUC"] not in (None, "", "—")
    chunks = at.table[1].value  # static tables: the numbers as shown, chunk as the index
    assert "report" in chunks and min(int(chunk) for chunk in chunks.index) == 2
