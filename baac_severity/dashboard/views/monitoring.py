"""Streamlit page "Monitoring" of the dashboard (``make dashboard``, top navigation), in the
order of the story: performance over time (realized, and estimated without labels), drift share
over time against its limit, the features that drift most, each chunk's drift report (opening
on the worst), and the live log of the service (``make monitor``). Reads the workspace files of
``$BAAC_DASHBOARD_REPO`` (default: this repository). Each section is a function of the
repository, so that another page or a navigation can call it."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from baac_severity.config import ROOT
from baac_severity.dashboard import monitoring_view as view

REPORT_HEIGHT = 640


def _figure(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def show_report(repo: Path, relative: str, key: str) -> None:
    path = repo / relative
    if not path.is_file():
        st.info(f"{relative} is not there: run `dvc repro` (or `make monitor`).")
        return
    page = path.read_text()
    st.download_button(f"Download {relative}", page, file_name=path.name, key=f"dl-{key}")
    components.html(page, height=REPORT_HEIGHT, scrolling=True)


def performance_over_time(repo: Path) -> None:
    """1. ROC-AUC per arrival chunk: realized, estimated from the probabilities alone (what
    live traffic allows before its labels), and the model's test ROC-AUC."""
    st.subheader("1. Performance over time")
    chunks, headline = view.out_of_time(repo)
    if chunks.empty:
        st.info("No out-of-time figures yet: run `dvc repro out-of-time`.")
        return
    columns = st.columns(4)
    columns[0].metric("mean out-of-time ROC-AUC", _figure(headline.get("mean_roc_auc")))
    worst = headline.get("worst_chunk")
    columns[1].metric(
        f"worst (chunk {worst})" if worst else "worst", _figure(headline.get("worst_roc_auc"))
    )
    columns[2].metric("estimation error (mean, no label)", _figure(headline.get("estimate_mae")))
    columns[3].metric("2018 → 2024 transfer ROC-AUC", _figure(headline.get("transfer_roc_auc")))
    chart = (
        alt.Chart(view.performance_long(chunks))
        .mark_line(point=True)
        .encode(
            x=alt.X("chunk:O", title="arrival chunk (light model trained on the earlier chunks)"),
            y=alt.Y("roc_auc:Q", title="ROC-AUC", scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            strokeDash=alt.StrokeDash("series:N", legend=None),
            tooltip=["chunk", "series", alt.Tooltip("roc_auc:Q", format=".3f")],
        )
    )
    st.altair_chart(chart, width="stretch")
    st.caption(
        "Estimated: CBPE, from the probabilities alone, calibrated on the validation rows of "
        "the earlier chunks. The test line is the workspace model, trained on every chunk."
    )
    shown = ["chunk", "roc_auc", "estimated_roc_auc", "estimate_error", "base_rate", "rows"]
    st.dataframe(
        chunks[[c for c in shown if c in chunks]],
        hide_index=True,
        column_config={
            name: st.column_config.NumberColumn(format="%.3f")
            for name in ("roc_auc", "estimated_roc_auc", "estimate_error", "base_rate")
        },
    )


def drift_over_time(repo: Path) -> pd.DataFrame:
    """2. Share of drifted features per chunk, against ``monitor.max_share_drifted``."""
    st.subheader("2. Drift share over time")
    frame = view.drift_by_chunk(repo)
    if frame.empty:
        st.info("No drift reports yet: run `dvc repro drift`.")
        return frame
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("chunk:O", title="arrival chunk"),
            y=alt.Y(
                "share_drifted:Q", title="share of drifted features", axis=alt.Axis(format="%")
            ),
            color=alt.condition(
                alt.datum.share_drifted > alt.datum.max_share_drifted,
                alt.value("#e4572e"),
                alt.value("#9aa5b1"),
            ),
            tooltip=[
                "chunk",
                alt.Tooltip("share_drifted:Q", format=".1%"),
                "drifted_features",
                alt.Tooltip("target_rate:Q", format=".1%", title="severe rate"),
            ],
        )
    )
    limit = alt.Chart(frame).mark_rule(strokeDash=[6, 4]).encode(y="mean(max_share_drifted):Q")
    st.altair_chart(bars + limit, width="stretch")
    st.caption("Dashed line: the limit, monitor.max_share_drifted; red: above it.")
    return frame


def worst_features(repo: Path) -> None:
    """3. The features that drifted in the most chunks."""
    st.subheader("3. The features that drift most")
    table = view.worst_features(repo)
    if table.empty:
        st.info("No drifted feature yet.")
        return
    st.dataframe(
        table,
        hide_index=True,
        column_config={"largest_statistic": st.column_config.NumberColumn(format="%.3f")},
    )


def chunk_reports(repo: Path, frame: pd.DataFrame) -> None:
    """4. Each chunk's drift report, opening on the most drifted chunk."""
    if frame.empty:
        return
    st.subheader("4. Drift report of a chunk")
    chunks = frame["chunk"].tolist()
    worst = view.worst_chunk(frame)
    chunk = st.selectbox(
        "Drift report of chunk (default: the most drifted)",
        chunks,
        index=chunks.index(worst) if worst in chunks else 0,
        key="drift-chunk",
    )
    show_report(repo, frame.loc[frame["chunk"] == chunk, "report"].iloc[0], "chunk")


def live(repo: Path) -> None:
    """5. The served model's logged traffic: estimated ROC-AUC and drift (``make monitor``)."""
    st.subheader("5. Live traffic of the served model")
    summary = view.live_report(repo)
    if summary is None:
        st.info("No live report yet: run `make monitor` after the service has answered requests.")
        return
    estimate, test = summary.get("estimated_roc_auc"), summary.get("test_roc_auc")
    columns = st.columns(4)
    drop = summary.get("estimated_drop")
    columns[0].metric(
        "estimated ROC-AUC (no label)",
        _figure(estimate),
        delta=None if drop is None else f"{-drop:+.3f} vs test",
    )
    columns[1].metric("test ROC-AUC", _figure(test))
    columns[2].metric("share of drifted features", f"{summary['share_drifted']:.1%}")
    columns[3].metric("logged rows", f"{summary['rows']:,}")
    max_drop = summary.get("max_estimated_drop")
    if drop is not None and max_drop is not None and drop > max_drop:
        st.error(
            f"Estimated ROC-AUC {estimate:.3f} is {drop:.3f} below the test ROC-AUC "
            f"(limit monitor.max_estimated_drop = {max_drop})."
        )
    verdict = st.error if summary["share_drifted"] > summary["max_share_drifted"] else st.success
    verdict(
        f"Model {summary['model_version']}: {summary['share_drifted']:.1%} of the features "
        f"drifted (limit {summary['max_share_drifted']:.0%}): "
        f"{', '.join(summary['drifted']) or 'none'}"
    )
    show_report(repo, summary["report"], "live")


def render(repo: Path) -> None:
    """Every section, in the order of the story."""
    performance_over_time(repo)
    frame = drift_over_time(repo)
    worst_features(repo)
    chunk_reports(repo, frame)
    live(repo)


def main() -> None:
    st.title("Monitoring")  # the page's config is the navigation's (dashboard/app.py)
    render(Path(os.environ.get("BAAC_DASHBOARD_REPO", str(ROOT))))


main()
