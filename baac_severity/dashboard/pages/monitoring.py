"""Streamlit page "Monitoring" of the dashboard (``make dashboard``, left sidebar): ROC-AUC by
arrival chunk against the test ROC-AUC, drift share per chunk with its HTML reports, and the
live drift of the service log (``make monitor``). Reads the workspace files of
``$BAAC_DASHBOARD_REPO`` (default: this repository)."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from baac_severity.config import ROOT
from baac_severity.dashboard import monitoring_view as view

REPORT_HEIGHT = 600


def show_report(repo: Path, relative: str, key: str) -> None:
    path = repo / relative
    if not path.is_file():
        st.info(f"{relative} is not there: run `dvc repro` (or `make monitor`).")
        return
    page = path.read_text()
    st.download_button(f"Download {relative}", page, file_name=path.name, key=f"dl-{key}")
    components.html(page, height=REPORT_HEIGHT, scrolling=True)


def roc_by_chunk(repo: Path) -> None:
    st.subheader("ROC-AUC by arrival chunk")
    chunks, rest = view.out_of_time(repo)
    if chunks.empty:
        st.info("No out-of-time figures yet: run `dvc repro out-of-time`.")
        return
    summary = rest.get("summary", {})
    line = (
        alt.Chart(chunks)
        .mark_line(point=True)
        .encode(
            x=alt.X("chunk:O", title="arrival chunk (model trained on the earlier chunks)"),
            y=alt.Y("roc_auc:Q", title="ROC-AUC", scale=alt.Scale(zero=False)),
            tooltip=["chunk", "roc_auc", "f1_weighted", "ece", "base_rate", "rows"],
        )
    )
    layers = [line]
    if summary.get("test_roc_auc") is not None:
        test = pd.DataFrame({"test ROC-AUC": [summary["test_roc_auc"]]})
        layers.append(
            alt.Chart(test).mark_rule(strokeDash=[6, 4], color="gray").encode(y="test ROC-AUC:Q")
        )
    st.altair_chart(alt.layer(*layers), use_container_width=True)
    columns = st.columns(3)
    columns[0].metric("mean out-of-time ROC-AUC", summary.get("mean_roc_auc"))
    columns[1].metric("test ROC-AUC (in-sample period)", summary.get("test_roc_auc"))
    transfer = rest.get("transfer_2018_2024") or {}
    columns[2].metric("2018 → 2024 transfer ROC-AUC", transfer.get("roc_auc"))
    model = rest.get("model")
    st.caption(f"Light model: {model}; dashed line: the workspace model's test ROC-AUC.")
    st.dataframe(chunks, hide_index=True)


def drift_by_chunk(repo: Path) -> None:
    st.subheader("Drift share per arrival chunk")
    frame = view.drift_by_chunk(repo)
    if frame.empty:
        st.info("No drift reports yet: run `dvc repro drift`.")
        return
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("chunk:O", title="arrival chunk"),
            y=alt.Y("share_drifted:Q", title="share of drifted features"),
            tooltip=["chunk", "share_drifted", "target_rate"],
        )
    )
    st.altair_chart(chart, use_container_width=True)
    st.dataframe(frame, hide_index=True)
    chunk = st.selectbox("Drift report of chunk", frame["chunk"].tolist(), key="drift-chunk")
    show_report(repo, frame.loc[frame["chunk"] == chunk, "report"].iloc[0], "chunk")


def live(repo: Path) -> None:
    st.subheader("Live drift of the service log")
    summary = view.live_report(repo)
    if summary is None:
        st.info("No live report yet: run `make monitor` after the service has answered requests.")
        return
    columns = st.columns(3)
    columns[0].metric("share of drifted features", summary["share_drifted"])
    columns[1].metric("limit (monitor.max_share_drifted)", summary["max_share_drifted"])
    columns[2].metric("logged rows", summary["rows"])
    verdict = st.error if summary["share_drifted"] > summary["max_share_drifted"] else st.success
    verdict(f"model {summary['model_version']}: drifted {', '.join(summary['drifted']) or 'none'}")
    show_report(repo, summary["report"], "live")


def main() -> None:
    st.set_page_config(page_title="BAAC monitoring", layout="wide")
    st.title("BAAC severity: monitoring")
    repo = Path(os.environ.get("BAAC_DASHBOARD_REPO", str(ROOT)))
    roc_by_chunk(repo)
    drift_by_chunk(repo)
    live(repo)


main()
