"""Stage ``drift``: does each arriving chunk look like the data the model was trained on?

For each arrival chunk k from ``monitor.first_chunk`` on, the model features of every accident
of chunk k (the *current* data) are compared with those of the training rows of chunks < k
(the *reference*), one feature at a time, and the severe rate with the reference's. Writes one
HTML report per chunk (``reports/drift/chunk-NNNN.html``, drawn by ``drift_report.py``),
``plots/drift_share.csv`` (share of drifted features and severe rate per chunk),
``plots/drift_features.csv`` (each feature's test per chunk) and the DVC
metric ``metrics/drift.json``, the headline only: the highest share and its chunk.

The tests are Evidently's defaults (``evidently.legacy.calculations.stattests``), implemented
here with scipy because Evidently 0.7.23, the latest release, cannot be imported with pandas 3
(docs/monitoring.md): with more than 1,000 reference rows, the normed Wasserstein distance for a
numerical feature with more than 5 distinct values and the Jensen-Shannon distance otherwise,
both with threshold 0.1 (distances, not p-values: at these sizes every p-value would be tiny);
with 1,000 reference rows or fewer, the Kolmogorov-Smirnov test for such a numerical feature,
chi-squared for more than 2 values and a two-proportion Z-test for 2, at p < 0.05. Missing
values are left out of each test, as Evidently does; a feature with no value at all on one side
and values on the other (a 2024-only feature against 2018 training rows) has *appeared* or
*vanished*: drift by definition, where Evidently would fail on the empty column.

The same comparison runs on the service's live log (``baac_severity.monitoring.live``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy import stats
from scipy.spatial import distance

from baac_severity.config import (
    DATASET,
    DRIFT_FEATURES,
    DRIFT_METRICS,
    DRIFT_PLOT,
    DRIFT_REPORTS,
    drift_report,
)
from baac_severity.data.io import remove_leftovers, write_json, write_text
from baac_severity.features import ACCIDENT, build_features, feature_categories, feature_names

LARGE_REFERENCE = 1000  # Evidently: distances above this many reference rows, tests below
DISTANCE_THRESHOLD = 0.1
P_VALUE_THRESHOLD = 0.05
FEW_VALUES = 5  # a numerical feature with at most this many distinct values is binned by value
HISTOGRAM_FROM = 20  # Jensen-Shannon bins a numerical feature by Sturges above this many values
TARGET = "severe"
DRAWN_BINS = 12  # bars per side in a report's distribution chart


@dataclass(frozen=True)
class Distribution:
    """Share of the reference and current rows per bin (a value, a range, or missing): what
    a report draws for a drifted feature."""

    bins: list[str]
    reference: list[float]
    current: list[float]


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "categorical" (a BAAC code or a count of codes) or "numerical"
    test: str
    statistic: float | None  # a distance, or a p-value for the small-reference tests
    threshold: float | None
    drifted: bool
    reference_missing: float  # share of missing values
    current_missing: float
    distribution: Distribution | None = None  # drawn for the drifted features only


@dataclass(frozen=True)
class DriftReport:
    title: str
    reference: str  # what the reference rows are, in words
    current: str
    reference_rows: int
    current_rows: int
    features: list[FeatureDrift]
    target: FeatureDrift | None
    reference_target_rate: float | None
    current_target_rate: float | None

    @property
    def tested(self) -> list[FeatureDrift]:
        """Features with a value on at least one side (a feature absent from both says
        nothing and is left out of the share)."""
        return [f for f in self.features if f.test != "absent"]

    @property
    def share_drifted(self) -> float:
        tested = self.tested
        return round(sum(f.drifted for f in tested) / len(tested), 6) if tested else 0.0

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


def feature_kind(name: str) -> str:
    """Codes (and counts of codes) are categorical, measures numerical: features.py knows."""
    return "categorical" if feature_categories(name) is not None else "numerical"


def _shares(
    reference: np.ndarray, current: np.ndarray, histogram: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each side's rows per bin: Sturges bins of both sides for a many-valued
    numerical feature, else one bin per value (Evidently's ``get_binned_data``)."""
    if histogram:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        return (
            np.histogram(reference, edges)[0] / len(reference),
            np.histogram(current, edges)[0] / len(current),
        )
    values = np.union1d(reference, current)
    ref_bins = np.searchsorted(values, reference)  # the index of each row's value
    cur_bins = np.searchsorted(values, current)
    return (
        np.bincount(ref_bins, minlength=len(values)) / len(reference),
        np.bincount(cur_bins, minlength=len(values)) / len(current),
    )


def _test(reference: np.ndarray, current: np.ndarray, kind: str) -> tuple[str, float, bool]:
    """Evidently's default test for this kind and size: (name, statistic, drifted)."""
    n_values = len(np.union1d(reference, current))
    many_valued = kind == "numerical" and n_values > FEW_VALUES
    if len(reference) > LARGE_REFERENCE:
        if many_valued:
            norm = max(float(np.std(reference)), 0.001)
            value = stats.wasserstein_distance(reference, current) / norm
            return "wasserstein_normed", value, value >= DISTANCE_THRESHOLD
        histogram = kind == "numerical" and len(np.unique(reference)) > HISTOGRAM_FROM
        ref_shares, cur_shares = _shares(reference, current, histogram)
        value = float(distance.jensenshannon(ref_shares, cur_shares))
        return "jensen_shannon", value, value >= DISTANCE_THRESHOLD
    if many_valued:
        p_value = float(stats.ks_2samp(reference, current).pvalue)
        return "kolmogorov_smirnov", p_value, p_value < P_VALUE_THRESHOLD
    if n_values > 2:
        ref_shares, cur_shares = _shares(reference, current, False)
        observed = cur_shares * len(current)
        expected = ref_shares * len(current)
        if (observed[expected == 0] > 0).any():  # a value never seen in the reference
            return "chi_squared", 0.0, True
        kept = expected > 0
        p_value = float(stats.chisquare(observed[kept], expected[kept]).pvalue)
        return "chi_squared", p_value, p_value < P_VALUE_THRESHOLD
    first = np.union1d(reference, current)[0]
    p_value = _two_proportion_p_value(reference == first, current == first)
    return "z_test", p_value, p_value < P_VALUE_THRESHOLD


def _two_proportion_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    pooled = (reference.sum() + current.sum()) / (len(reference) + len(current))
    spread = np.sqrt(pooled * (1 - pooled) * (1 / len(reference) + 1 / len(current)))
    if spread == 0:
        return 1.0
    z = (current.mean() - reference.mean()) / spread
    return float(2 * stats.norm.sf(abs(z)))


def _value_label(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def distribution(reference: np.ndarray, current: np.ndarray, kind: str) -> Distribution:
    """Shares of all rows (missing ones in a last bin) per value, for a categorical or
    few-valued feature (the rarest values pooled as "other"), else per equal-width range
    between the 1st and 99th percentiles of both sides (the tails in the end bins)."""
    # Rounded: the same value computed two ways (sin of a month) is one bar, not two.
    present = [np.round(side[~np.isnan(side)], 9) + 0.0 for side in (reference, current)]
    both = np.concatenate(present)
    values = np.unique(both)
    if kind == "categorical" or len(values) <= DRAWN_BINS:
        shares = [
            np.array([np.sum(side == v) / max(len(full), 1) for v in values])
            for side, full in zip(present, (reference, current), strict=True)
        ]
        order = np.argsort(-np.maximum(*shares), kind="stable")
        kept = np.sort(order[: DRAWN_BINS - 1]) if len(values) > DRAWN_BINS else order[:0]
        if len(kept):
            bins = [_value_label(v) for v in values[kept]] + ["other"]
            shares = [np.r_[share[kept], share.sum() - share[kept].sum()] for share in shares]
        else:
            bins = [_value_label(v) for v in values]
    else:
        low, high = np.percentile(both, [1, 99]) if len(both) else (0.0, 1.0)
        edges = np.linspace(low, high, DRAWN_BINS + 1) if high > low else np.array([low, low + 1])
        shares = [
            np.histogram(np.clip(side, edges[0], edges[-1]), edges)[0] / max(len(full), 1)
            for side, full in zip(present, (reference, current), strict=True)
        ]
        bins = [f"{_value_label(a)}–{_value_label(b)}" for a, b in itertools.pairwise(edges)]
    missing = [float(np.isnan(side).mean()) if len(side) else 0.0 for side in (reference, current)]
    if any(missing):
        bins.append("missing")
        shares = [np.r_[share, m] for share, m in zip(shares, missing, strict=True)]
    reference_shares, current_shares = ([round(float(x), 4) for x in s] for s in shares)
    return Distribution(bins, reference_shares, current_shares)


def feature_drift(name: str, reference: pd.Series, current: pd.Series, kind: str) -> FeatureDrift:
    all_ref = reference.to_numpy(dtype=float, na_value=np.nan)
    all_cur = current.to_numpy(dtype=float, na_value=np.nan)
    missing = {
        "reference_missing": round(float(np.isnan(all_ref).mean()), 6) if len(all_ref) else 1.0,
        "current_missing": round(float(np.isnan(all_cur).mean()), 6) if len(all_cur) else 1.0,
    }
    ref, cur = all_ref[~np.isnan(all_ref)], all_cur[~np.isnan(all_cur)]
    if len(ref) == 0 or len(cur) == 0:
        test = "absent" if len(ref) == len(cur) == 0 else "appeared" if len(cur) else "vanished"
        drawn = None if test == "absent" else distribution(all_ref, all_cur, kind)
        return FeatureDrift(
            name, kind, test, None, None, test != "absent", **missing, distribution=drawn
        )
    test, value, drifted = _test(ref, cur, kind)
    threshold = DISTANCE_THRESHOLD if len(ref) > LARGE_REFERENCE else P_VALUE_THRESHOLD
    statistic = round(float(value), 6)
    drawn = distribution(all_ref, all_cur, kind) if drifted else None
    return FeatureDrift(
        name, kind, test, statistic, threshold, bool(drifted), **missing, distribution=drawn
    )


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    title: str,
    reference_label: str,
    current_label: str,
    target: tuple[pd.Series, pd.Series] | None = None,
) -> DriftReport:
    """Per-feature drift of ``current`` against ``reference`` (the same feature columns), and
    of the target when ``target`` gives its reference and current values."""
    features = [
        feature_drift(name, reference[name], current[name], feature_kind(name))
        for name in reference.columns
    ]
    target_drift, reference_rate, current_rate = None, None, None
    if target is not None:
        target_drift = feature_drift(TARGET, *target, "categorical")
        reference_rate = round(float(target[0].astype(float).mean()), 6)
        current_rate = round(float(target[1].astype(float).mean()), 6)
    return DriftReport(
        title,
        reference_label,
        current_label,
        len(reference),
        len(current),
        features,
        target_drift,
        reference_rate,
        current_rate,
    )


# --- the stage ------------------------------------------------------------------------------


def chunk_reports(dataset: pd.DataFrame, groups: list[str], first_chunk: int) -> list:
    """(chunk, report) for each arrival chunk from ``first_chunk`` on."""
    features = build_features(dataset, groups)[feature_names(ACCIDENT, groups)]
    chunk = dataset["arrival_chunk"].to_numpy()
    train = (dataset["dataset_split"] == "train").to_numpy()
    severe = dataset[TARGET]
    reports = []
    for k in sorted(int(c) for c in np.unique(chunk) if c >= first_chunk):
        reference, current = train & (chunk < k), chunk == k
        report = compare(
            features[reference],
            features[current],
            title=f"Drift of arrival chunk {k}",
            reference_label=f"training rows of chunks 1-{k - 1}",
            current_label=f"every accident of chunk {k}",
            target=(severe[reference], severe[current]),
        )
        reports.append((k, report))
    return reports


def feature_table(reports: list[tuple[int, DriftReport]]) -> pd.DataFrame:
    """One row per chunk and feature: its test, statistic and verdict (the Monitoring page's
    "worst features")."""
    rows = [
        {
            "chunk": k,
            "feature": f.feature,
            "test": f.test,
            "statistic": f.statistic,
            "drifted": f.drifted,
        }
        for k, report in reports
        for f in report.tested
    ]
    return pd.DataFrame(rows, columns=["chunk", "feature", "test", "statistic", "drifted"])


class Renderer(Protocol):
    """``drift_report.render_html``: a report's page (the stage wires it in, so that the
    statistics here know nothing of HTML)."""

    def __call__(
        self,
        report: DriftReport,
        shares: Sequence[tuple[str, float]],
        threshold: float,
        highlighted: str | None = None,
        links: dict[str, str] | None = None,
    ) -> str: ...


def run(params: DictConfig, render_html: Renderer) -> dict:
    remove_leftovers(DRIFT_REPORTS, DRIFT_METRICS, DRIFT_PLOT, DRIFT_FEATURES)
    dataset = pd.read_parquet(DATASET)
    reports = chunk_reports(dataset, list(params.features.groups), params.monitor.first_chunk)
    limit = float(params.monitor.max_share_drifted)
    shares = [(f"chunk {k}", report.share_drifted) for k, report in reports]
    for k, report in reports:
        links = {
            label: "" if other == k else drift_report(other).name
            for (label, _), (other, _) in zip(shares, reports, strict=True)
        }
        write_text(render_html(report, shares, limit, f"chunk {k}", links), drift_report(k))
        print(
            f"drift: chunk {k}: share {report.share_drifted}, severe {report.current_target_rate}"
        )
    plot = pd.DataFrame(
        {
            "chunk": [k for k, _ in reports],
            "share_drifted": [r.share_drifted for _, r in reports],
            "drifted_features": [len(r.drifted) for _, r in reports],
            "target_rate": [r.current_target_rate for _, r in reports],
            "max_share_drifted": limit,
        }
    )
    write_text(plot.to_csv(index=False), DRIFT_PLOT)
    write_text(feature_table(reports).to_csv(index=False), DRIFT_FEATURES)
    metrics: dict = {}
    if reports:
        worst, report = max(reports, key=lambda item: (item[1].share_drifted, -item[0]))
        metrics = {"highest_share": report.share_drifted, "most_drifted_chunk": worst}
    write_json({"drift": metrics}, DRIFT_METRICS)
    return metrics
