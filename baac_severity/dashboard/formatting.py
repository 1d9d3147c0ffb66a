"""How the dashboard writes numbers and names: one format per metric, signed deltas, and
readable column headers. Every page formats through here, so that a metric reads the same in
every table, chart tooltip and caption (tests/test_dashboard_browser.py checks the pages)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

# Counts (rows, chunks, features) have no decimals; the model size has two (MB); shares and
# every model-quality score have four, enough to tell experiments 0.001 apart.
COUNT_WORDS = {"rows", "chunks", "chunk", "count", "total", "read", "quarantined", "n"}
SIZE_WORDS = ("size_mb",)
SCORE_DECIMALS, SIZE_DECIMALS = 4, 2
# Readable names of the metric keys' parts: "validation.roc_auc" -> "validation ROC-AUC".
WORDS = {
    "roc_auc": "ROC-AUC",
    "f1_macro": "F1 macro",
    "f1_weighted": "F1 weighted",
    "log_loss": "log loss",
    "ece": "ECE",
    "brier": "Brier",
    "size_mb": "size (MB)",
    "accuracy": "accuracy",
    "out_of_time": "out-of-time",
    "share_drifted": "drifted share",
    "model": "model",
}


def decimals(name: str) -> int:
    """The number of decimals of a metric or column, from its name."""
    last = name.rsplit(".", 1)[-1]
    if last in SIZE_WORDS:
        return SIZE_DECIMALS
    if COUNT_WORDS & set(last.split("_")):  # "rows", "train_rows", "n_cars", "chunks_ingested"
        return 0
    return SCORE_DECIMALS


def printf(name: str, signed: bool = False) -> str:
    """The printf format of a column (Streamlit's NumberColumn ``format``)."""
    return f"%{'+' if signed else ''}.{decimals(name)}f"


def number(value: Any, name: str, signed: bool = False) -> str:
    """A value as text in its column's format; "–" when missing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(number):
        return "–"
    return f"{number:{'+' if signed else ''}.{decimals(name)}f}"


def label(name: str) -> str:
    """A readable header for a metric key: "test.f1_weighted" -> "test F1 weighted"."""
    parts = name.split(".")
    if parts[0] == "model" and len(parts) == 2:
        parts = parts[1:]  # "model.size_mb" -> "size (MB)"
    return " ".join(WORDS.get(part, part.replace("_", " ")) for part in parts)


def header_width(text: str, minimum: int = 70) -> int:
    """Pixels that show ``text`` whole in a table header (Streamlit's grid: about 7 px a
    character at its 14 px font, plus padding)."""
    return max(minimum, int(6.2 * len(text)) + 16)


def number_column(name: str, signed: bool = False, title: str | None = None) -> Any:
    """A Streamlit NumberColumn in the metric's format, wide enough for its header."""
    shown = title or label(name)
    return st.column_config.NumberColumn(
        shown, format=printf(name, signed), width=header_width(shown), help=name
    )


def as_text(
    frame: pd.DataFrame, metric_of: dict[str, str] | None = None, signed: Iterable[str] = ()
) -> pd.DataFrame:
    """``frame`` with its number columns written in their formats, for ``st.table`` (a static
    table: numbers as shown, text wrapped instead of cut). ``metric_of`` names the metric
    whose format a column takes when its own name does not tell it."""
    metric_of, signed = metric_of or {}, set(signed)
    shown = frame.copy()
    for column in frame.select_dtypes("number").columns:
        name = metric_of.get(str(column), str(column))
        shown[column] = [number(v, name, column in signed) for v in frame[column]]
    return shown
