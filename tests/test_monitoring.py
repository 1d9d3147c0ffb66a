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
from baac_severity.monitoring.drift_report import render_html
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
    page = render_html(reports[first_2024], [(str(k), v) for k, v in shares.items()], 0.1)
    assert "day_of_week" in page and "appeared" in page


def test_a_report_draws_every_drifted_feature_and_the_share_against_its_limit(real):
    """The report of the most drifted bundled chunk: one chart per drifted feature (reference
    and current bars), the share per chunk with the limit's dashed line, formatted figures,
    and at most 300 KB."""
    dataset, _ = real
    reports = dict(drift.chunk_reports(dataset, GROUPS, 2))
    shares = [(f"chunk {k}", r.share_drifted) for k, r in reports.items()]
    worst = max(reports, key=lambda k: reports[k].share_drifted)
    report = reports[worst]
    page = render_html(report, shares, 0.1, f"chunk {worst}")
    assert len(page.encode()) <= 300_000
    drifted = report.drifted
    assert drifted and page.count('aria-label="') == len(drifted) + 1  # + the share chart
    for name in drifted:
        assert f'aria-label="{name}"' in page
    assert page.count('<rect class="reference"') > len(drifted)
    assert page.count('<line class="rule"') == 1 and "limit 10.0 %" in page
    # The share chart: this chunk's label in bold, the chunks above the limit in red.
    assert page.count('class="x this"') == 1
    assert f"chunk {worst}: {100 * report.share_drifted:.1f} % of the features" in page
    assert page.count('<rect class="above"') == sum(share > 0.1 for _, share in shares)
    assert "0.194444" not in page and "0.80049" not in page  # figures are formatted
    undrifted = next(f for f in report.features if not f.drifted and f.test != "absent")
    assert undrifted.distribution is None


def test_a_distribution_keeps_every_row_in_its_bars():
    rng = np.random.default_rng(1)
    reference = np.r_[rng.normal(size=900), np.full(100, np.nan)]
    current = rng.normal(1.0, size=1000)
    drawn = drift.distribution(reference, current, "numerical")
    assert len(drawn.bins) == drift.DRAWN_BINS + 1 and drawn.bins[-1] == "missing"
    assert sum(drawn.reference) == pytest.approx(1, abs=1e-3)
    assert sum(drawn.current) == pytest.approx(1, abs=1e-3)
    assert drawn.reference[-1] == pytest.approx(0.1) and drawn.current[-1] == 0
    codes = drift.distribution(np.arange(40.0) % 20, np.arange(40.0) % 3, "categorical")
    assert codes.bins[-1] == "other" and len(codes.bins) == drift.DRAWN_BINS
    assert sum(codes.reference) == pytest.approx(1, abs=1e-3)


def test_monitoring_page_renders_the_workspace_figures(monkeypatch):
    if not (ROOT / "metrics" / "out_of_time.json").is_file():
        pytest.skip("no out-of-time metrics in the workspace")
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(ROOT))
    page = ROOT / "baac_severity" / "dashboard" / "views" / "monitoring.py"
    at = AppTest.from_file(str(page), default_timeout=60)
    at.run()
    assert not at.exception
    titles = [s.value for s in at.subheader]
    assert titles[:4] == [
        "1. Performance over time",
        "2. Drift share over time",
        "3. The features that drift most",
        "4. Drift report of a chunk",
    ]
    labels = {m.label: m.value for m in at.metric}
    assert labels["2018 → 2024 transfer ROC-AUC"] not in (None, "", "—")
    assert float(labels["estimation error (mean, no label)"]) < 0.05
    performance = at.dataframe[0].value
    assert {"roc_auc", "estimated_roc_auc", "estimate_error"} <= set(performance)
    # The report selector opens on the most drifted chunk.
    shares = pd.read_csv(ROOT / "plots" / "drift_share.csv")
    most = int(shares.loc[shares["share_drifted"].idxmax(), "chunk"])
    assert at.selectbox(key="drift-chunk").value == most
