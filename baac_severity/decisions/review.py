"""Review DVC experiments for a pull request: a Markdown report against a baseline.

    baac review [EXPERIMENT ...] [--baseline main]      (or: make review)

With no experiment named, every experiment derived from the baseline is reviewed. The report
holds the key metrics with deltas against the baseline, the params each experiment changed,
the data snapshot it trained on (chunks and rows of ``metrics/data.json``), the ranking on
the selection metric (``promotion.metric``, a validation metric) with the baseline and the
workspace competing, the best one (or "no experiment beats <baseline>"), paired bootstrap
intervals of every delta on the test rows (``baac_severity/decisions/compare.py``), ROC,
precision-recall and feature-importance plots rendered as PNG next to it, every other changed
metric, and the commands that take the winner further. It is written atomically to
``reports/review-<baseline>-vs-<experiments>.md`` and printed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from baac_severity.config import REPORTS_DIR
from baac_severity.data.io import atomic_path, write_text
from baac_severity.decisions import comparable, compare
from baac_severity.decisions import experiments as ex

BASELINE_STATES = [ex.WORKSPACE, "baseline"]
UNFINISHED_NOTE = "no results: `dvc queue logs {name}` tells why"
TOP_FEATURES = 12


class ReviewError(SystemExit):
    """A review that cannot be made (unknown baseline or experiment): exits with its message."""


# --- selecting --------------------------------------------------------------------------


REGENERATE = "baac review"


def resolve(repo: Path, rev: str) -> str:
    done = ex.git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if done.returncode != 0:
        raise ReviewError(f"unknown baseline {rev!r}: not a git revision of {repo}")
    return done.stdout.decode().strip()


def select(frame: pd.DataFrame, baseline_rev: str, names: list[str]) -> pd.DataFrame:
    """The baseline row, then the named experiments (default: all of that baseline)."""
    base = frame[(frame["rev"] == baseline_rev) & frame["state"].isin(BASELINE_STATES)]
    if base.empty:
        raise ReviewError(f"dvc exp show lists no baseline {baseline_rev[:7]}")
    candidates = frame[~frame["state"].isin(BASELINE_STATES)]
    candidates = candidates[candidates["baseline_rev"] == baseline_rev]
    if names:
        unknown = sorted(set(names) - set(candidates["experiment"]))
        if unknown:
            known = sorted(candidates["experiment"].astype(str)) or ["none"]
            raise ReviewError(f"no experiment {unknown} on this baseline; known: {known}")
        order = {name: i for i, name in enumerate(names)}  # the order asked for
        candidates = candidates[candidates["experiment"].isin(names)]
        candidates = candidates.sort_values("experiment", key=lambda s: s.map(order))
    return pd.concat([base.head(1), candidates], ignore_index=True)


def elsewhere_hint(repo: Path, missing: list[str], baseline: str) -> str:
    """Why named experiments are not on the baseline: unknown, or derived from another commit."""
    everything = ex.load_experiments(repo, all_commits=True)
    found = everything[everything["experiment"].isin(missing)]
    where = [f"{r.experiment} is derived from {r.baseline}" for r in found.itertuples()]
    unknown = sorted(set(missing) - set(found["experiment"]))
    hints = where + ([f"no experiment named {', '.join(unknown)}"] if unknown else [])
    return f"not derived from {baseline}: {'; '.join(hints)} (use --baseline REV)"


# --- formatting ---------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def fmt_delta(value: Any, reference: Any) -> str:
    try:
        delta = float(value) - float(reference)
    except (TypeError, ValueError):
        return fmt(value)
    return fmt(value) if pd.isna(delta) else f"{fmt(value)} ({delta:+.4f})"


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table of preformatted cells (``fmt``), by tabulate's pipe format."""
    frame = pd.DataFrame(list(rows), columns=headers, dtype=object)
    return frame.to_markdown(index=False, disable_numparse=True)


def slug(baseline: str, names: list[str]) -> str:
    text = f"{baseline}-vs-{'-'.join(names)}" if names else f"{baseline}-all"
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    if len(text) > 80:  # keep file names short but distinct
        text = f"{text[:60]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return text


# --- sections -------------------------------------------------------------------------------


def metrics_section(rows: pd.DataFrame) -> str:
    metrics = [m for m in ex.KEY_METRICS if m in rows.columns]
    base = rows.iloc[0]
    body = [[f"**{base['experiment']}** (baseline)", base["state"], *map(fmt, base[metrics])]]
    for _, row in rows.iloc[1:].iterrows():
        cells = [fmt_delta(row[m], base[m]) for m in metrics]
        body.append([str(row["experiment"]), str(row["state"]), *cells])
    arrows = [m + (" ↓" if not ex.higher_is_better(m) else "") for m in metrics]
    note = "Values, with the delta against the baseline in brackets (↓: lower is better)."
    return f"## Metrics (test split unless named)\n\n{note}\n\n" + table(
        ["experiment", "state", *arrows], body
    )


def _with_workspace(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The reviewed rows plus the workspace, when it sits on the baseline: ranked too."""
    base = rows.iloc[0]
    workspace = frame[(frame["state"] == ex.WORKSPACE) & (frame["baseline_rev"] == base["rev"])]
    return (
        pd.concat([rows, workspace], ignore_index=True) if base["state"] != ex.WORKSPACE else rows
    )


def ranking_section(selection: comparable.Selection) -> str:
    metric, base, ranked = selection.metric, selection.base, selection.ranked
    if ranked.empty:
        return f"## Ranking\n\nNo reviewed row has {metric}."
    reported = [m for m in ("test.roc_auc", "test.f1_macro", "test.log_loss") if m in ranked]
    body = [
        [
            str(rank),
            f"**{row['experiment']}**" if row["rev"] == base["rev"] else str(row["experiment"]),
            fmt_delta(row[metric], base[metric]),
            *map(fmt, row[reported]),
        ]
        for rank, (_, row) in enumerate(ranked.iterrows(), start=1)
    ]
    note = (
        f"Ranked on **{metric}** (`promotion.metric`: choose on validation), the baseline and "
        "the workspace included; test metrics are reported beside, never used to choose. "
        f"Only runs validated on {base['experiment']}'s data snapshot are ranked."
    )
    text = f"## Ranking\n\n{note}\n\n" + table(["#", "experiment", metric, *reported], body)
    if not selection.apart.empty:
        apart = [
            [str(row["experiment"]), fmt(row[metric]), str(row[comparable.REASON])]
            for _, row in selection.apart.iterrows()
        ]
        text += (
            "\n\n**Not ranked: another data snapshot.** Their validation rows differ from "
            f"{base['experiment']}'s; the uncertainty section compares them on the test rows "
            "both scored, and the gate (`make promote EXP=...`) on the validation rows both "
            "scored.\n\n" + table(["experiment", metric, "why"], apart)
        )
    return text


def best_section(selection: comparable.Selection, settings: compare.Settings) -> str:
    metric, base, top = selection.metric, selection.base, selection.top
    if selection.ranked.empty:
        return f"## Best\n\nNo reviewed experiment has {metric}."
    if not selection.beats:
        runner_up = (
            f" The best of the others, {top['experiment']}, has "
            f"{fmt_delta(top[metric], base[metric])}."
            if top is not None
            else ""
        )
        return (
            f"## Best\n\n**No experiment beats {base['experiment']}** on {metric} "
            f"({fmt(base[metric])}; needs a gain > 0 and >= promotion.min_delta = "
            f"{settings.min_delta}).{runner_up} Nothing to promote."
        )
    assert top is not None  # selection.beats implies a top challenger
    return (
        f"## Best\n\n**{top['experiment']}** beats {base['experiment']} on {metric}: "
        f"{fmt_delta(top[metric], base[metric])}. Promote it (the gate re-checks it against "
        "the champion, with the paired bootstrap on the test rows):\n\n"
        f"```bash\n{selection.promote_command}\n```"
    )


def uncertainty_section(repo: Path, rows: pd.DataFrame, settings: compare.Settings) -> str:
    """Paired bootstrap intervals of each finished row's deltas against the baseline."""
    base = rows.iloc[0]
    distinct = ex.without_copied_workspace(rows[rows["state"].isin(ex.OWN_RESULT_STATES)])
    finished = distinct[distinct["rev"] != base["rev"]]
    if finished.empty:
        return ""
    try:
        reference = compare.read_predictions(repo, _rev(base))
    except compare.CompareError as error:
        return f"## Uncertainty\n\nNo intervals: {error}."
    parts = []
    for _, row in finished.iterrows():
        try:
            comparison = compare.compare_predictions(
                reference, compare.read_predictions(repo, _rev(row)), settings.bootstrap
            )
        except compare.CompareError as error:
            parts.append(f"**{row['experiment']}**: no intervals: {error}.")
            continue
        name = str(row["experiment"])
        parts.append(
            f"**{name}**\n\n" + compare.markdown_table(comparison, base["experiment"], name)
        )
    return "## Uncertainty (test split)\n\n" + "\n\n".join(parts)


def _rev(row: pd.Series) -> str | None:
    return None if row["rev"] == ex.WORKSPACE else str(row["rev"])


def params_section(rows: pd.DataFrame) -> str:
    base = rows.iloc[0]
    body = []
    for _, row in rows.iloc[1:].iterrows():
        for column in ex.param_columns(rows):
            if not ex.same_value(row[column], base[column]):
                name = column[len(ex.PARAMS_PREFIX) :]
                body.append([str(row["experiment"]), name, fmt(base[column]), fmt(row[column])])
    if not body:
        return "## Changed params\n\nNo experiment changes a param."
    return "## Changed params\n\n" + table(["experiment", "param", "baseline", "experiment"], body)


def snapshot_section(rows: pd.DataFrame) -> str:
    columns = [c for c in rows.columns if c in ex.SNAPSHOT_COLUMNS]
    if not columns:
        return "## Data snapshot\n\nNo metrics/data.json in these revisions."
    why = comparable.reasons(rows, rows.iloc[0]).fillna("same snapshot")
    body = [[str(r["experiment"]), *map(fmt, r[columns]), fmt(why[i])] for i, r in rows.iterrows()]
    return "## Data snapshot\n\n" + table(["experiment", *columns, "vs baseline"], body)


def unfinished_section(rows: pd.DataFrame) -> str:
    pending = rows[rows["state"].isin(["queued", "running", "failed"])]
    if pending.empty:
        return ""
    items = [
        f"- **{r['experiment']}** ({r['state']}): "
        f"{r['error'] or UNFINISHED_NOTE.format(name=r['experiment'])}"
        for _, r in pending.iterrows()
    ]
    return "## Not finished\n\n" + "\n".join(items)


def details_section(rows: pd.DataFrame) -> str:
    """Every other metric that differs from the baseline, per experiment, folded."""
    base = rows.iloc[0]
    others = [m for m in ex.metric_columns(rows) if m not in ex.KEY_METRICS]
    parts = []
    for _, row in rows.iloc[1:].iterrows():
        body = [
            [m, fmt(base[m]), fmt_delta(row[m], base[m])]
            for m in others
            if pd.notna(row[m]) and not ex.same_value(row[m], base[m])
        ]
        if body:
            parts.append(
                f"<details><summary>{row['experiment']}: {len(body)} other metrics changed"
                f"</summary>\n\n{table(['metric', 'baseline', 'experiment'], body)}\n\n</details>"
            )
    return "## All changed metrics\n\n" + "\n\n".join(parts) if parts else ""


# --- plots ----------------------------------------------------------------------------------


def _curves(axis, repo: Path, rows: pd.DataFrame, path: str, x: str, y: str) -> bool:
    drawn = False
    for _, row in rows.iterrows():
        data = ex.read_plot(repo, row["rev"], path)
        if data is None or not {x, y} <= set(data.columns):
            continue
        if "class" in data.columns:
            data = data[data["class"] == data["class"].iloc[-1]]
        axis.plot(data[x], data[y], label=str(row["experiment"]))
        drawn = True
    axis.set(xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1))
    if drawn:
        axis.legend(fontsize="small")
    return drawn


def _importance(axis, repo: Path, rows: pd.DataFrame, notes: list[str]) -> bool:
    """Importance differences against the baseline, for the runs whose importance was
    computed the same way (``comparable.importance_differences``); the others are named."""
    tables = {}
    for _, row in rows.iterrows():
        data = ex.read_plot(repo, row["rev"], "plots/importance.csv")
        if data is not None and {"feature", "importance"} <= set(data.columns):
            tables[str(row["experiment"])] = data
    base = str(rows.iloc[0]["experiment"])
    if base not in tables or len(tables) < 2:
        return False
    diff, apart = comparable.importance_differences(tables, base)
    notes += [f"- **{n}**: {why} (its own: `dvc plots diff {n}`)" for n, why in apart.items()]
    if not len(diff.columns):
        return False
    top = diff.abs().max(axis=1).sort_values().tail(TOP_FEATURES).index
    diff.loc[top].plot.barh(ax=axis)
    axis.set(xlabel=f"importance − {base}", ylabel="")
    return True


def render_plots(
    repo: Path, rows: pd.DataFrame, out_dir: Path, name: str, notes: list[str]
) -> list[str]:
    """ROC, precision-recall and importance-difference PNGs; their Markdown image lines."""
    import matplotlib

    matplotlib.use("Agg")  # headless: reviews run in CI and over SSH
    import matplotlib.pyplot as plt

    # Queued and failed experiments carry the plot files of the commit they were queued on.
    rows = rows[rows["state"].isin(ex.OWN_RESULT_STATES)]
    lines = []
    figures = [
        ("roc", "ROC (test)", lambda ax: _curves(ax, repo, rows, "plots/roc.csv", "fpr", "tpr")),
        (
            "pr",
            "Precision-recall (test)",
            lambda ax: _curves(ax, repo, rows, "plots/precision_recall.csv", "recall", "precision"),
        ),
        (
            "importance",
            "Feature importance vs baseline",
            lambda ax: _importance(ax, repo, rows, notes),
        ),
    ]
    for key, title, draw in figures:
        figure, axis = plt.subplots(figsize=(6, 4.5))
        if draw(axis):
            axis.set_title(title)
            figure.tight_layout()
            target = out_dir / f"review-{name}-{key}.png"
            with atomic_path(target, ".png") as tmp:
                figure.savefig(tmp, format="png", dpi=90)
            lines.append(f"![{title}]({target.name})")
        plt.close(figure)
    return lines


def plots_section(repo: Path, rows: pd.DataFrame, out_dir: Path, name: str) -> str:
    notes: list[str] = []
    images = render_plots(repo, rows, out_dir, name, notes)
    finished = rows[rows["state"].isin(ex.OWN_RESULT_STATES)]
    revs = " ".join(str(r) for r in finished["experiment"])
    body = "\n\n".join(images) if images else "No plot files in these revisions."
    if notes:
        body += "\n\nFeature importance not compared:\n\n" + "\n".join(notes)
    return (
        f"## Plots\n\n{body}\n\nInteractive, all plots of `dvc.yaml`:\n"
        f"`dvc plots diff {revs} --open`"
    )


# --- report -------------------------------------------------------------------------------


def build_report(
    repo: Path,
    rows: pd.DataFrame,
    baseline: str,
    out_dir: Path,
    name: str,
    plots: bool,
    ranked: pd.DataFrame | None = None,
) -> str:
    settings = compare.promotion_settings(repo)
    ranked = rows if ranked is None else ranked
    reviewed = ", ".join(str(r) for r in rows["experiment"].iloc[1:]) or "none"
    header = (
        f"# Experiment review: {reviewed} vs {baseline}\n\n"
        f"Baseline `{baseline}` = `{rows.iloc[0]['rev'][:12]}`; "
        f"{len(rows) - 1} experiment(s). Regenerate: "
        f"`{' '.join([REGENERATE, *map(str, rows['experiment'].iloc[1:])])} "
        f"--baseline {baseline}`."
    )
    selection = comparable.select(ranked, rows.iloc[0], settings)
    sections = [
        header,
        metrics_section(rows),
        ranking_section(selection),
        best_section(selection, settings),
        uncertainty_section(repo, ranked, settings),
        unfinished_section(rows),
        params_section(rows),
        snapshot_section(rows),
        plots_section(repo, rows, out_dir, name) if plots else "",
        details_section(rows),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def review(
    repo: Path, names: list[str], baseline: str, output: Path | None, plots: bool = True
) -> tuple[Path, str]:
    rev = resolve(repo, baseline)
    try:
        frame = ex.load_experiments(repo, rev=rev)
    except ex.ExpShowError as exc:
        raise ReviewError(str(exc)) from exc
    missing = sorted(set(names) - set(frame.loc[frame["baseline_rev"] == rev, "experiment"]))
    if missing:
        raise ReviewError(elsewhere_hint(repo, missing, baseline))
    rows = select(frame, rev, names)
    name = slug(baseline, names)
    target = output or repo / REPORTS_DIR / f"review-{name}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = build_report(
            repo, rows, baseline, target.parent, name, plots, _with_workspace(frame, rows)
        )
    except compare.CompareError as exc:
        raise ReviewError(str(exc)) from exc
    write_text(report, target)
    return target, report
