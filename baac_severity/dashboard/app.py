"""Streamlit dashboard of the DVC experiments: ``make dashboard``.

    streamlit run baac_severity/dashboard/app.py --server.headless true [-- --repo PATH]

The repository shown is, in this order: the sidebar's path, the ``?repo=`` query parameter,
``--repo``, ``$BAAC_DASHBOARD_REPO``, this repository. ``$BAAC_DASHBOARD_EXP_SHOW`` may name a
recorded ``dvc exp show --json`` answer to show instead of running dvc (demos, benchmark).

The parsed experiments are cached per repository state (HEAD, ``refs/exps``, queue runs,
workspace metrics: ``experiments.repo_state``), and the ``dvc exp show`` answer of that state is
kept in ``.dvc/tmp/dashboard/`` so that a restarted page does not run dvc again; **Refresh**
clears both. Every section
renders on its own: a section that meets odd data shows a warning and the page goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from baac_severity.config import ROOT
from baac_severity.dashboard import formatting as fmt
from baac_severity.data.io import write_text
from baac_severity.decisions import comparable
from baac_severity.decisions import compare as cmp
from baac_severity.decisions import experiments as ex

REPO_ENV = "BAAC_DASHBOARD_REPO"
EXP_SHOW_ENV = "BAAC_DASHBOARD_EXP_SHOW"
ROC, PR, CONFUSION, IMPORTANCE = (
    "plots/roc.csv",
    "plots/precision_recall.csv",
    "plots/confusion.csv",
    "plots/importance.csv",
)
BASELINE_STATES = [ex.WORKSPACE, "baseline"]
MAX_SIDE_BY_SIDE = 4
TOP_FEATURES = 20
STORE_DIR = Path(".dvc/tmp/dashboard")
# Not "pages/": Streamlit would also serve a pages/ folder as its own pages, without this
# navigation (a fresh server's first request for /predict ran views/predict.py alone).
PAGES = Path(__file__).with_name("views")
BEST_CSS = "font-weight: bold; color: #1b7f3b"
# --- data, cached per repository state --------------------------------------------------


def default_repo() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--repo")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return st.query_params.get("repo") or known.repo or os.environ.get(REPO_ENV) or str(ROOT)


def stored_answer(repo: str, all_commits: bool, state: str) -> Path:
    """Where the ``dvc exp show --json`` answer of this repository state is kept on disk
    (DVC's git-ignored ``.dvc/tmp``): a restarted page reuses it instead of running dvc."""
    return Path(repo) / STORE_DIR / f"exp-show-{state}{'-A' if all_commits else ''}.json"


def exp_show_records(repo: str, all_commits: bool, state: str) -> list[dict]:
    """The answer of ``dvc exp show --json`` for ``state``: from disk, else from dvc (kept)."""
    stored = stored_answer(repo, all_commits, state)
    try:
        return json.loads(stored.read_text())
    except (OSError, ValueError):
        records = ex.run_exp_show(repo, all_commits=all_commits)
    try:
        for old in stored.parent.glob(f"exp-show-*{'-A' if all_commits else ''}.json"):
            old.unlink(missing_ok=True)  # earlier states: never asked again
        write_text(json.dumps(records), stored)
    except OSError:
        pass  # a read-only repository: the page still works, without the disk cache
    return records


@st.cache_data(show_spinner="Reading experiments (dvc exp show)…", max_entries=16)
def cached_experiments(repo: str, all_commits: bool, state: str, recorded: str) -> pd.DataFrame:
    """Parsed experiments; ``state`` keys the caches (see ``experiments.repo_state``)."""
    if recorded:
        return ex.parse_exp_show(json.loads(Path(recorded).read_text()))
    return ex.add_scores(ex.parse_exp_show(exp_show_records(repo, all_commits, state)), repo)


@st.cache_data(show_spinner=False, max_entries=512)
def cached_plot(repo: str, rev: str, path: str, state: str) -> pd.DataFrame | None:
    """A plot file at a revision: commits never change, the workspace is keyed by ``state``."""
    return ex.read_plot(repo, rev, path)


def plots_of(repo: str, rows: pd.DataFrame, path: str, state: str) -> pd.DataFrame:
    """One plot file of several experiments stacked, with an ``experiment`` column."""
    frames = []
    for _, row in rows.iterrows():
        frame = cached_plot(repo, row["rev"], path, state if row["rev"] == ex.WORKSPACE else "")
        if frame is not None and not frame.empty:
            frames.append(frame.assign(experiment=row["label"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """A unique display label per row: the name, plus the short rev where names repeat."""
    labels = frame["experiment"].astype(str)
    repeated = labels.duplicated(keep=False)
    short = frame["rev"].astype(str).str[:7]
    return frame.assign(label=labels.where(~repeated, labels + " (" + short + ")"))


# --- sections -----------------------------------------------------------------------------


def guarded(section: Callable[..., None], *args: Any) -> None:
    """Run one section; odd data in it must not take the whole page down."""
    try:
        section(*args)
    except Exception as exc:  # deliberately broad: the page must always render
        st.warning(f"Could not render {section.__name__}: {type(exc).__name__}: {exc}")


def experiments_table(frame: pd.DataFrame, metrics: list[str]) -> None:
    st.subheader("Runs and their metrics")
    left, right = st.columns([1, 2])
    states = sorted(frame["state"].dropna().astype(str).unique())
    chosen = left.multiselect("State", states, default=states)
    text = right.text_input("Filter (name, changed params, error)", key="table_filter")
    shown = frame[frame["state"].astype(str).isin(chosen)]
    if text:
        haystack = shown[["label", "changed_params", "error"]].astype(str).agg(" ".join, axis=1)
        shown = shown[haystack.str.contains(text, case=False, regex=False)]
    extra = st.multiselect("Metric columns", ex.metric_columns(frame), default=metrics)
    params = st.multiselect("Param columns", ex.param_columns(frame))
    # What is compared first, left to right; the rest after it, so that at 1,400 px the
    # headline metrics and changed params fit without scrolling (tests/test_experiments.py).
    errors = ["error"] if shown["error"].notna().any() else []
    columns = ["label", "changed_params", *extra, "state", "chunks_ingested", "created", *errors]
    table = shown[[c for c in columns if c in shown.columns]].rename(
        columns={"label": "experiment"}
    )
    # Param values may mix types (ingest.chunks: 2 or "all"): shown as text.
    for param in params:
        table[param] = shown[param].map(lambda v: "" if v is None else str(v))
    if "created" in table:
        # Text, not a DatetimeColumn: the grid shows a missing time (the workspace has none)
        # as "None". Year first, so that sorting the column sorts by time.
        created = pd.to_datetime(table["created"], errors="coerce", utc=True).dt.tz_convert(None)
        table["created"] = created.dt.strftime("%Y-%m-%d %H:%M").fillna("")
    config: dict[str, Any] = {
        "experiment": st.column_config.TextColumn(
            pinned=True, width=text_width(table["experiment"], "experiment")
        ),
        "changed_params": st.column_config.TextColumn(
            "changed params", width=text_width(table["changed_params"], "changed params")
        ),
        "chunks_ingested": st.column_config.NumberColumn("chunks", format="%d", width=70),
        "created": st.column_config.TextColumn(width=130),
        **{m: fmt.number_column(m) for m in extra},
        **{p: st.column_config.TextColumn(p, width=text_width(table[p], p)) for p in params},
    }
    st.dataframe(
        table.style.apply(best_cells, frame=frame, axis=0, subset=extra),
        hide_index=True,
        column_config=config,
        key="experiments_table",
    )
    st.caption(
        f"{len(table)} of {len(frame)} rows · best value of each metric in bold green · click a "
        "column header to sort"
    )


def text_width(values: pd.Series, title: str, widest: int = 420) -> int:
    """Pixels that show the longest value (and the header) whole, up to ``widest``."""
    longest = max([len(title), *(len(str(v)) for v in values.dropna())])
    return min(widest, fmt.header_width("x" * longest))


def best_cells(column: pd.Series, frame: pd.DataFrame) -> list[str]:
    """CSS of a metric column: the best experiment's cell (``experiments.best_row``) marked."""
    best = ex.best_row(frame, str(column.name))
    return [BEST_CSS if best is not None and i == best.name else "" for i in column.index]


def best_experiment(repo: str, frame: pd.DataFrame, state: str) -> None:
    """The ranking on the selection metric (validation), the baseline competing, runs on
    another data snapshot apart (``comparable.select``), and the paired bootstrap intervals
    of the top challenger against the baseline."""
    st.subheader("Best experiment")
    settings = cmp.promotion_settings(repo)
    metric = settings.metric
    baselines = frame[frame["state"].isin(BASELINE_STATES)]
    base = baselines.sort_values("state", key=lambda s: s != "baseline", kind="stable").iloc[0]
    selection = comparable.select(frame[frame["baseline_rev"] == base["rev"]], base, settings)
    ranked, top = selection.ranked, selection.top
    if ranked.empty or pd.isna(base.get(metric)):
        st.info(f"No finished experiment with {metric} yet: `make sweep` or `dvc exp run -S ...`.")
        return
    if top is None or not selection.beats:
        st.info(
            f"No experiment beats {base['label']} on {metric} ({base[metric]:.4f}): "
            "nothing to promote."
        )
    else:
        delta = top[metric] - base[metric]
        st.success(
            f"**{top['label']}** beats {base['label']} on {metric}: {top[metric]:.4f} "
            f"({delta:+.4f})"
        )
        st.caption("Promote it (the gate re-checks it against the champion):")
        st.code(selection.promote_command, language="bash")
    reported = [m for m in ("test.roc_auc", "test.f1_macro", "test.log_loss") if m in ranked]
    table = ranked[["label", metric, *reported]].rename(columns={"label": "experiment"})
    delta = f"Δ vs {base['label']}"
    table.insert(2, delta, ranked[metric] - base[metric])
    st.caption(f"Ranked on {metric} (validation); test metrics beside, not used to choose.")
    shown = fmt.as_text(table.head(10), {delta: metric}, signed=[delta])
    st.table(shown.rename(columns=fmt.label).set_index("experiment"))
    if not selection.apart.empty:
        st.warning(
            f"Not ranked: {len(selection.apart)} run(s) on another data snapshot than "
            f"{base['label']} (other validation rows). The gate compares them on the "
            "validation rows both scored."
        )
        apart = selection.apart[["label", metric, comparable.REASON]]
        apart = apart.rename(columns={"label": "experiment", comparable.REASON: "why"})
        st.table(fmt.as_text(apart).rename(columns=fmt.label).set_index("experiment"))
    if top is not None:
        guarded(intervals, repo, base, top, state, settings)


@st.cache_data(show_spinner="Paired bootstrap on the test rows…", max_entries=64)
def cached_intervals(repo: str, revs: tuple[str, str], state: str, bootstrap: str) -> pd.DataFrame:
    """Intervals of ``revs[1]`` − ``revs[0]``; ``state`` keys the workspace's predictions."""
    tables = [cmp.read_predictions(repo, None if r == ex.WORKSPACE else r) for r in revs]
    champion, challenger = tables
    return cmp.interval_frame(cmp.compare_predictions(champion, challenger, json.loads(bootstrap)))


def intervals(
    repo: str, base: pd.Series, top: pd.Series, state: str, settings: cmp.Settings
) -> None:
    st.markdown(f"**{top['label']} − {base['label']}: 95 % paired bootstrap on the test rows**")
    if os.environ.get(EXP_SHOW_ENV):
        st.caption("No intervals for a recorded `dvc exp show` answer (no predictions to read).")
        return
    try:
        table = cached_intervals(
            repo, (base["rev"], top["rev"]), state, json.dumps(settings.bootstrap, sort_keys=True)
        )
    except cmp.CompareError as error:
        st.caption(f"No intervals: {error}")
        return
    # The runs by name: "champion"/"challenger" are the promotion gate's words, not this view's.
    table = table.rename(columns={"champion": base["label"], "challenger": top["label"]})
    shown = table.copy()
    for column in (base["label"], top["label"]):
        shown[column] = [
            fmt.number(v, m) for v, m in zip(table[column], table["metric"], strict=True)
        ]
    for column in ("Δ", "low", "high"):
        shown[column] = [
            fmt.number(v, m, signed=True)
            for v, m in zip(table[column], table["metric"], strict=True)
        ]
    st.table(shown.set_index("metric"))
    st.altair_chart(interval_chart(table, f"{top['label']} − {base['label']}"), width="stretch")


def interval_chart(table: pd.DataFrame, title: str) -> alt.Chart:
    """Each metric's Δ as a dot with its 95 % interval, and the line of no difference: one
    panel per metric, each zoomed to its own interval."""
    data = table[["metric", "Δ", "low", "high"]].copy()
    base = alt.Chart(data).encode(
        y=alt.Y("metric:N", title=None), tooltip=["metric", "Δ", "low", "high"]
    )
    rule = base.mark_rule().encode(x=alt.X("low:Q", title=title), x2="high:Q")
    dot = base.mark_point(filled=True, size=80).encode(x="Δ:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return (rule + dot + zero).properties(height=30 * len(data) + 40)


def default_selection(candidates: pd.DataFrame, metric: str | None) -> list[str]:
    """The HEAD baseline and the two best experiments by ``metric`` (else the workspace)."""
    baseline = candidates[candidates["state"] == "baseline"]["label"].head(1).tolist()
    others = candidates[~candidates["state"].isin(BASELINE_STATES)]
    if metric is not None and metric in others.columns:
        others = others.sort_values(metric, ascending=not ex.higher_is_better(metric))
    chosen = (baseline + others["label"].head(2).tolist())[:3]
    rest = [label for label in candidates["label"] if label not in chosen]
    return chosen + rest[: max(0, 2 - len(chosen))]


def compare(repo: str, frame: pd.DataFrame, metrics: list[str], state: str) -> None:
    st.subheader("Compare experiments")
    has_results = frame[metrics].notna().any(axis=1) if metrics else False
    candidates = frame[frame["state"].isin(ex.OWN_RESULT_STATES) & has_results]
    if len(candidates) < 2:
        st.info("Fewer than two experiments with results: nothing to compare yet.")
        return
    metric = metrics[0] if metrics else None
    labels = candidates["label"].tolist()
    selected = st.multiselect(
        "Experiments to compare",
        labels,
        default=default_selection(candidates, metric),
    )
    if len(selected) < 2:
        st.info("Select at least two experiments.")
        return
    # The HEAD baseline (main) first: the usual reference of a pull request.
    ordered = candidates.sort_values("state", key=lambda s: s != "baseline", kind="stable")
    baselines = ordered[ordered["state"].isin(BASELINE_STATES)]["label"].tolist()
    reference = st.selectbox("Deltas against", baselines or labels)
    rows = candidates[candidates["label"].isin(selected)]
    ref_row = candidates[candidates["label"] == reference]
    guarded(metric_deltas, rows, ref_row, metrics)
    guarded(metric_bars, rows, metrics)
    guarded(curves, repo, rows, state, reference)
    guarded(confusion_matrices, repo, rows, state)
    guarded(importance_differences, repo, rows, state)


def metric_deltas(rows: pd.DataFrame, reference: pd.DataFrame, metrics: list[str]) -> None:
    name = reference["label"].iloc[0]
    st.markdown(f"**Metrics, and in brackets the difference from {name}**")
    values = rows.set_index("label")[metrics].apply(pd.to_numeric, errors="coerce")
    base = reference[metrics].apply(pd.to_numeric, errors="coerce").iloc[0]
    table = pd.DataFrame(index=values.index.rename("experiment"))
    # One column per metric, value and signed delta in one cell: seven columns fit 1,400 px
    # where a value column and a delta column per metric (13) did not.
    for metric in metrics:
        table[fmt.label(metric)] = [
            fmt.number(value, metric)
            + ("" if label == name else f" ({fmt.number(value - base[metric], metric, True)})")
            for label, value in values[metric].items()
        ]
    st.table(table)


def metric_bars(rows: pd.DataFrame, metrics: list[str]) -> None:
    metric = st.selectbox("Dot plot of", metrics, format_func=fmt.label)
    data = rows[["label", metric]].rename(columns={"label": "experiment", metric: "value"})
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data = data.dropna()
    chart = (
        alt.Chart(data)
        .mark_point(filled=True, size=120)
        .encode(
            y=alt.Y("experiment:N", sort="-x", title=None),
            # Zoomed to the data: 0.837 and 0.828 must not look the same, as bars from 0 did.
            x=alt.X(
                "value:Q",
                title=fmt.label(metric),
                scale=alt.Scale(zero=False, nice=False, padding=20),
                axis=alt.Axis(format=f".{fmt.decimals(metric)}f", tickCount=6),
            ),
            color=experiment_color(rows, legend=False),
            tooltip=["experiment", alt.Tooltip("value:Q", format=f".{fmt.decimals(metric)}f")],
        )
        .properties(height=40 * len(data) + 40)
    )
    st.altair_chart(chart, width="stretch")


def experiment_color(rows: pd.DataFrame, legend: bool = True) -> alt.Color:
    """One colour per compared experiment, the same in every chart of the comparison."""
    scale = alt.Scale(domain=rows["label"].tolist())
    return alt.Color("experiment:N", scale=scale, legend=alt.Legend() if legend else None)


def _line_chart(
    data: pd.DataFrame, x: str, y: str, title: str, color: alt.Color, y_title: str | None = None
) -> alt.Chart:
    """Curves that zoom (mouse wheel) and pan (drag); a double click resets the view."""
    unit = alt.Scale(domain=[0, 1])
    return (
        alt.Chart(data, title=title)
        .mark_line()
        .encode(
            x=alt.X(f"{x}:Q", scale=unit),
            y=alt.Y(f"{y}:Q", scale=unit if y_title is None else alt.Scale(), title=y_title or y),
            color=color,
            tooltip=[
                "experiment",
                alt.Tooltip(f"{x}:Q", format=".3f"),
                alt.Tooltip(f"{y}:Q", format="+.4f" if y_title else ".4f"),
            ],
        )
        .interactive()
    )


CURVE_GRID = 101  # points of the difference view, 0 to 1 by 0.01


def curve_differences(data: pd.DataFrame, x: str, y: str, reference: str) -> pd.DataFrame:
    """Each experiment's ``y`` minus the reference's, both interpolated at the same ``x`` (0
    to 1 by 0.01): close curves that overlap on the plain view come apart here."""
    grid = np.linspace(0, 1, CURVE_GRID)

    def at_grid(curve: pd.DataFrame) -> np.ndarray:
        ordered = curve.sort_values([x, y])
        return np.interp(grid, ordered[x].to_numpy(float), ordered[y].to_numpy(float))

    base = at_grid(data[data["experiment"] == reference])
    frames = [
        pd.DataFrame({x: grid, y: at_grid(curve) - base, "experiment": name})
        for name, curve in data.groupby("experiment", sort=False)
        if name != reference
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def curves(repo: str, rows: pd.DataFrame, state: str, reference: str) -> None:
    roc, pr = plots_of(repo, rows, ROC, state), plots_of(repo, rows, PR, state)
    if roc.empty and pr.empty:
        st.info("No ROC or precision-recall files in these revisions.")
        return
    classes = sorted(set(roc.get("class", pd.Series(dtype=str)).dropna().astype(str)))
    chosen = st.selectbox("Class", classes) if len(classes) > 1 else None
    view = st.radio(
        "Curves",
        ["as they are", f"difference from {reference}"],
        horizontal=True,
        help="Close models' curves overlap: the difference view subtracts the reference's "
        "curve. Both views zoom with the mouse wheel (double click: reset).",
    )
    left, right = st.columns(2)
    for column, data, x, y, title in [
        (left, roc, "fpr", "tpr", "ROC"),
        (right, pr, "recall", "precision", "Precision-recall"),
    ]:
        if {x, y} <= set(data.columns):
            data = data if chosen is None else data[data["class"].astype(str) == chosen]
            if view == "as they are":
                chart = _line_chart(data, x, y, title, experiment_color(rows))
            else:
                difference = curve_differences(data, x, y, reference)
                y_title = f"{y} − {reference}'s"
                chart = _line_chart(difference, x, y, title, experiment_color(rows), y_title)
            column.altair_chart(chart, width="stretch")


def _confusion(data: pd.DataFrame) -> alt.Chart:
    # One row per cell with its count (baac_severity.modeling.evaluate.confusion_counts);
    # experiments run before that wrote one row per test example, each counting 1.
    weights = data["count"] if "count" in data.columns else pd.Series(1, index=data.index)
    weighted = data.assign(count=weights.fillna(1))
    counts = weighted.groupby(["actual", "predicted"])["count"].sum().reset_index()
    counts["share of actual"] = counts["count"] / counts.groupby("actual")["count"].transform("sum")
    base = alt.Chart(counts).encode(
        x=alt.X("predicted:N", axis=alt.Axis(labelAngle=0)), y=alt.Y("actual:N")
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share of actual:Q", scale=alt.Scale(domain=[0, 1]), legend=None),
        tooltip=["actual", "predicted", "count", alt.Tooltip("share of actual:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=14).encode(
        text="count:Q",
        color=alt.condition(
            "datum['share of actual'] > 0.5", alt.value("white"), alt.value("black")
        ),
    )
    return (cells + text).properties(height=220)


def confusion_matrices(repo: str, rows: pd.DataFrame, state: str) -> None:
    st.markdown("**Confusion matrices (test)**, coloured by share of each actual class")
    data = plots_of(repo, rows.head(MAX_SIDE_BY_SIDE), CONFUSION, state)
    if data.empty or not {"actual", "predicted"} <= set(data.columns):
        st.info("No confusion files in these revisions.")
        return
    names = list(dict.fromkeys(data["experiment"]))
    for column, name in zip(st.columns(len(names)), names, strict=True):
        column.caption(name)
        chart = _confusion(data[data["experiment"] == name])
        column.altair_chart(chart, width="stretch")


def importance_differences(repo: str, rows: pd.DataFrame, state: str) -> None:
    data = plots_of(repo, rows, IMPORTANCE, state)
    if data.empty or not {"feature", "importance"} <= set(data.columns):
        st.info("No feature-importance files in these revisions.")
        return
    tables = {name: table for name, table in data.groupby("experiment", sort=False)}
    first = rows["label"].iloc[0] if rows["label"].iloc[0] in tables else next(iter(tables))
    differences, apart = comparable.importance_differences(tables, first)
    for name, why in apart.items():
        st.caption(f"{name}: {why}; shown on its own below.")
    if len(differences.columns):
        top = differences.abs().max(axis=1).sort_values(ascending=False).head(TOP_FEATURES).index
        st.markdown(f"**Feature importance: top {len(top)} differences vs {first}**")
        long = differences.loc[top].reset_index().melt("feature", var_name="experiment")
        chart = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                y=alt.Y("feature:N", sort=list(top), title=None),
                x=alt.X("value:Q", title=f"importance − {first}"),
                color=experiment_color(rows),
                yOffset="experiment:N",
                tooltip=["feature", "experiment", alt.Tooltip("value:Q", format=".4f")],
            )
        )
        st.altair_chart(chart, width="stretch")
    table = data.pivot_table(index="feature", columns="experiment", values="importance")
    order = table.max(axis=1).sort_values(ascending=False).head(TOP_FEATURES).index
    shown = table.loc[order]
    st.table(fmt.as_text(shown, dict.fromkeys(shown.columns.astype(str), "importance")))


def ingestion_progress(repo: str) -> None:
    st.subheader("Ingestion progress (workspace)")
    raw = ex.read_repo_file(repo, ex.WORKSPACE, ex.PROGRESS_METRICS)
    if raw is None:
        st.info(f"No {ex.PROGRESS_METRICS} yet: run `make ingest_data_chunked` or `dvc repro`.")
        return
    progress = json.loads(raw)
    chunks = progress.get("chunks") or {}
    ingested, total = int(chunks.get("ingested") or 0), int(chunks.get("total") or 0)
    share = min(ingested / total, 1.0) if total else 0.0
    st.progress(share, text=f"{ingested}/{total} chunks of {chunks.get('chunk_size')} accidents")
    tables = pd.DataFrame.from_dict(progress.get("tables") or {}, orient="index")
    counts = dict.fromkeys(tables.columns.astype(str), "rows")
    st.table(fmt.as_text(tables, counts).rename_axis("table"))
    st.caption(f"Data as of {progress.get('as_of', '?')}")


# --- page ---------------------------------------------------------------------------------


# Widgets whose options come from the data have no key: their identity then includes their
# options and default, so they reset when the experiments change instead of keeping a stale
# (possibly empty) choice.


def sidebar() -> tuple[str, bool]:
    st.sidebar.header("Repository")
    repo = st.sidebar.text_input("Path", value=default_repo(), key="repo_path")
    all_commits = st.sidebar.checkbox("Experiments of all commits (-A)", key="all_commits")
    if st.sidebar.button("Refresh", help="Clear the cache and re-run `dvc exp show`"):
        st.cache_data.clear()
        shutil.rmtree(Path(repo) / STORE_DIR, ignore_errors=True)
    return repo, all_commits


def load(repo: str, all_commits: bool) -> tuple[pd.DataFrame, str]:
    if not (Path(repo) / ".dvc").is_dir():
        st.error(f"{repo} is no DVC repository (no .dvc/ folder).")
        st.stop()
    recorded = os.environ.get(EXP_SHOW_ENV, "")
    state = ex.repo_state(repo)
    try:
        frame = cached_experiments(repo, all_commits, state, recorded)
    except (ex.ExpShowError, OSError, ValueError) as exc:
        st.error(f"Could not read the experiments: {exc}")
        st.stop()
    st.sidebar.caption(f"state {state} · {len(frame)} rows" + (" (recorded)" if recorded else ""))
    return with_labels(frame), state


def experiments_page() -> None:
    st.title("Experiments")
    repo, all_commits = sidebar()
    frame, state = load(repo, all_commits)
    metrics = [m for m in ex.KEY_METRICS if m in ex.metric_columns(frame)]
    guarded(experiments_table, frame, metrics)
    guarded(best_experiment, repo, frame, state)
    guarded(compare, repo, frame, metrics, state)
    guarded(ingestion_progress, repo)


def main() -> None:
    """The pages, in a top navigation bar: each page is titled, and the sidebar (the
    repository's path, Refresh) starts collapsed so that tables get the whole width."""
    # No page_title: the browser tab shows each page's own title.
    st.set_page_config(layout="wide", initial_sidebar_state="collapsed")
    pages = [
        st.Page(experiments_page, title="Experiments", url_path="experiments", default=True),
        st.Page(PAGES / "monitoring.py", title="Monitoring", url_path="monitoring"),
        st.Page(PAGES / "predict.py", title="Predict", url_path="predict"),
    ]
    st.navigation(pages, position="top").run()


main()
