"""Compare like with like: the one rule for which runs can be ranked against a baseline.

A run's validation metrics are measured on the validation rows of *its* data snapshot. Runs
on the same snapshot (same chunks and rows of ``metrics/data.json`` and the same params that
decide which rows are scored and on what: years, chunk size, split, target) were scored on
the same rows, so their recorded validation metrics compare. A run on another snapshot (say 6
of 12 chunks) was validated on other rows:

- the dashboard and ``make review`` rank it apart, with the reason (``select``);
- the gate and ``make retrain`` compare the two models on the validation rows *both* scored,
  paired from their per-row predictions (``selection_scores``).

Importances follow the same rule: they are compared only when computed the same way
(``importance_differences``); the others are shown on their own.

The dashboard (``baac_severity/dashboard/app.py``), the review (``review.py``), the gate
(``gate.py``) and ``retrain.py`` all decide through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from baac_severity.decisions import compare
from baac_severity.decisions import experiments as ex

# The params that decide which rows a run is scored on and what it predicts.
EVALUATION_PARAMS = (
    "data.years",
    "ingest.chunk_size",
    "split.seed",
    "split.train",
    "split.validation",
    "split.test",
    "target.name",
    "target.unit",
    "target.years",
)
REASON = "not_comparable"  # column of ``Selection.apart``: why a row is not ranked


@dataclass(frozen=True)
class Snapshot:
    """What a run was trained and validated on."""

    chunks: Any  # chunks ingested
    chunks_total: Any
    fingerprint: tuple  # (rows, as of) of metrics/data.json, or a model's dataset sha256
    params: dict[str, Any]

    def chunks_text(self) -> str:
        return f"{_text(self.chunks)} of {_text(self.chunks_total)} chunks"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "?"
    return f"{value:.0f}" if isinstance(value, float) and value.is_integer() else str(value)


def _same(left: Any, right: Any) -> bool:
    return ex.same_value(left, right) or _text(left) == _text(right)


def row_snapshot(row: pd.Series) -> Snapshot:
    """The snapshot of a ``dvc exp show`` row (``experiments.parse_exp_show``)."""
    params = {key: row.get(ex.PARAMS_PREFIX + key) for key in EVALUATION_PARAMS}
    fingerprint = (row.get("rows"), row.get("data_as_of"))
    return Snapshot(row.get("chunks_ingested"), row.get("chunks_total"), fingerprint, params)


def model_snapshot(info: dict) -> Snapshot:
    """The snapshot of a trained model, from ``model_info.json`` or ``models/metadata.json``."""
    snapshot = info.get("data_snapshot") or {}
    flat = ex.flatten(info.get("params") or {})
    params = {key: flat.get(key) for key in EVALUATION_PARAMS}
    fingerprint = (snapshot.get("dataset_sha256"), snapshot.get("users_sha256"))
    return Snapshot(
        snapshot.get("chunks_ingested"), snapshot.get("chunks_total"), fingerprint, params
    )


def gap(run: Snapshot, baseline: Snapshot, baseline_name: str) -> str | None:
    """How ``run``'s data differs from ``baseline``'s; None when both were validated on the
    same rows."""
    if not (_same(run.chunks, baseline.chunks) and _same(run.chunks_total, baseline.chunks_total)):
        return f"trained on {run.chunks_text()} ({baseline_name}: {baseline.chunks_text()})"
    changed = [
        f"{key}={_text(run.params.get(key))} ({baseline_name}: {_text(baseline.params.get(key))})"
        for key in EVALUATION_PARAMS
        if not _same(run.params.get(key), baseline.params.get(key))
    ]
    if changed:
        return f"scored on other rows: {', '.join(changed)}"
    if not all(_same(a, b) for a, b in zip(run.fingerprint, baseline.fingerprint, strict=True)):
        return f"another data snapshot than {baseline_name}"
    return None


def difference(run: Snapshot, baseline: Snapshot, baseline_name: str) -> str | None:
    """Why ``run`` cannot be ranked with ``baseline`` on recorded validation metrics."""
    found = gap(run, baseline, baseline_name)
    return None if found is None else f"{found}: not comparable on validation"


# --- rankings: the dashboard and the review ---------------------------------------------


@dataclass
class Selection:
    """The ranking on the selection metric against a baseline, and its verdict."""

    metric: str
    base: pd.Series
    ranked: pd.DataFrame  # rows on the baseline's snapshot, best first, the baseline included
    apart: pd.DataFrame  # rows on another snapshot, best first, with the REASON column
    top: pd.Series | None  # the best comparable challenger
    beats: bool  # does it beat the baseline (``compare.Settings.beats``)?

    @property
    def promote_command(self) -> str | None:
        if self.top is None or not self.beats:
            return None
        if self.top["state"] == ex.WORKSPACE:
            return "make promote"
        return f"make promote EXP={self.top['experiment']}"


def reasons(frame: pd.DataFrame, base: pd.Series) -> pd.Series:
    """Per row: why it is not comparable with ``base`` on validation (None: comparable)."""
    reference = row_snapshot(base)
    name = str(base["experiment"])
    return frame.apply(lambda row: difference(row_snapshot(row), reference, name), axis=1).astype(
        object
    )


def select(frame: pd.DataFrame, base: pd.Series, settings: compare.Settings) -> Selection:
    """Rank ``frame`` on the selection metric; rows on another snapshot go apart."""
    metric = settings.metric
    ranked = ex.ranking(frame, metric)
    why = reasons(ranked, base) if len(ranked) else pd.Series(dtype=object)
    comparable = ranked[why.isna()]
    apart = ranked[why.notna()].assign(**{REASON: why[why.notna()]})
    challengers = comparable[comparable["rev"] != base["rev"]]
    top = challengers.iloc[0] if len(challengers) else None
    beats = (
        top is not None
        and pd.notna(base.get(metric))
        and settings.beats(float(top[metric]), float(base[metric]))
    )
    return Selection(metric, base, comparable, apart, top, bool(beats))


# --- the gate: two trained models --------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """The selection metric of champion and challenger, and on which rows it was measured."""

    champion: float | None
    challenger: float | None
    basis: str  # a sentence for the report
    problem: str | None = None  # why no fair comparison could be made


def _recorded(metrics: dict, dotted: str) -> float | None:
    split, name = dotted.split(".", 1)
    value = (metrics.get(split) or {}).get(name)
    return None if value is None else float(value)


def selection_scores(
    settings: compare.Settings,
    champion: tuple[dict, pd.DataFrame | None],
    challenger: tuple[dict, pd.DataFrame | None],
) -> Scores:
    """The selection metric of both models (info dict, per-row predictions): as recorded when
    both were validated on the same snapshot, else recomputed on the validation rows both
    scored."""
    (old_info, old_rows), (new_info, new_rows) = champion, challenger
    why = gap(model_snapshot(new_info), model_snapshot(old_info), "champion")
    metric = settings.metric
    if why is None:
        return Scores(
            _recorded(old_info["metrics"], metric),
            _recorded(new_info["metrics"], metric),
            "both models were validated on the same data snapshot: recorded values",
        )
    if old_rows is None or new_rows is None:
        return Scores(None, None, why, f"{why}, and a model has no per-row predictions to pair")
    try:
        paired = compare.pair(old_rows, new_rows, split="validation")
    except compare.CompareError as error:
        return Scores(None, None, why, f"{why}, and the validation rows cannot be paired: {error}")
    ones = np.ones((paired.rows, 1))
    name = settings.test_metric
    old = compare.WeightedMetrics(paired.target, paired.champion)(ones)[name][0]
    new = compare.WeightedMetrics(paired.target, paired.challenger)(ones)[name][0]
    basis = f"challenger {why}: compared on the {paired.rows:,} validation rows both scored"
    return Scores(round(float(old), 6), round(float(new), 6), basis)


# --- feature importance ------------------------------------------------------------------


def importance_differences(
    tables: dict[str, pd.DataFrame], reference: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Importance of each run minus the reference's, feature by feature, for the runs whose
    importance was computed the same way (the ``method`` column of plots/importance.csv); the
    others, with the reason, to be shown on their own."""
    method = _method(tables[reference])
    apart = {
        name: f"importance by {_method(table)}, {reference}'s by {method}: not comparable"
        for name, table in tables.items()
        if _method(table) != method
    }
    values = {
        name: table.groupby("feature")["importance"].mean()
        for name, table in tables.items()
        if name not in apart
    }
    frame = pd.DataFrame(values)
    return frame.sub(frame[reference], axis=0).drop(columns=reference), apart


def _method(table: pd.DataFrame) -> str:
    methods = table["method"].dropna().unique() if "method" in table.columns else []
    return str(methods[0]) if len(methods) else "an unrecorded method"
