"""DVC experiments as one tidy table: ``dvc exp show --json`` → a pandas DataFrame.

``parse_exp_show`` is the one place that knows the DVC 3 JSON schema: a list of baselines (the
workspace first, then commits), each with ``data`` (params, metrics, deps, outs, timestamp) and
``experiments[].revs[]`` carrying either ``data`` or ``error`` and an optional ``executor``
(state queued/running/success/failed). One row per workspace, baseline and experiment:

- ``experiment`` (the name ``dvc exp apply`` takes; ``workspace``; a baseline's branch name or
  short sha), ``rev``, ``baseline``, ``baseline_rev``, ``state``, ``executor``, ``created``,
  ``error`` (run failure and unreadable files, as text);
- the data snapshot of ``metrics/data.json`` (the summary of ``metrics/progress.json``):
  ``chunks_ingested``, ``chunks_total``, ``rows``, ``data_as_of``;
- metrics, flattened with dots: ``metrics/train.json`` and ``metrics/scores.json``
  unprefixed (``test.roc_auc``, ``test.f1_macro``), other files under their stem
  (``split.test.accidents``). ``metrics/scores.json`` is a plain output of train, not a DVC
  metric (each key would be one more ``dvc exp show`` column): ``load_experiments`` reads it
  from each revision's commit;
- params flattened under ``params.`` (``params.model.n_estimators``) and ``changed_params``,
  the params that differ from the row's baseline (``model.n_estimators=10, ...``).

The dashboard (``baac_severity/dashboard/app.py``) and the review report
(``baac_severity/decisions/review.py``) both read experiments through this module, plus the plot
files of any revision (``read_plot``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from baac_severity.config import PROMOTION_POLICY, SCORE_METRICS
from baac_severity.data.io import git
from baac_severity.modeling.evaluate import higher_is_better

WORKSPACE = "workspace"
# The train stage's, unprefixed (scores.json in answers of DVC before it left the metrics).
MODEL_METRICS = ("metrics/train.json", "metrics/scores.json")
PROGRESS_METRICS = "metrics/progress.json"  # a plain output: the ingestion details
DATA_METRICS = "metrics/data.json"
PARAMS_PREFIX = "params."
# DVC re-reads the metrics of queued and failed experiments from the commit they were queued
# on, so those numbers belong to someone else (the baseline or the previous workspace run).
# Only these states carry results of their own.
OWN_RESULT_STATES = {"success", WORKSPACE, "baseline"}
META_COLUMNS = [
    "experiment",
    "rev",
    "baseline",
    "baseline_rev",
    "state",
    "executor",
    "created",
    "error",
    "changed_params",
]
SNAPSHOT_COLUMNS = ["chunks_ingested", "chunks_total", "rows", "data_as_of"]
KEY_METRICS = [
    "test.roc_auc",
    "test.f1_weighted",
    "test.f1_macro",
    "test.log_loss",
    "validation.roc_auc",
    "model.size_mb",
]
DVC_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "True",
}


class ExpShowError(RuntimeError):
    """``dvc exp show`` failed or printed something that is not its JSON."""


# --- running dvc and git ----------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, **DVC_ENV}


def run_exp_show(
    repo: str | Path, all_commits: bool = False, rev: str | None = None, timeout: float = 300
) -> list[dict]:
    """The raw ``dvc exp show --json`` of ``repo`` (``-A`` for every commit's experiments)."""
    args = [sys.executable, "-m", "dvc", "exp", "show", "--json"]
    args += ["-A"] if all_commits else []
    args += ["--rev", rev] if rev else []
    try:
        done = subprocess.run(
            args, cwd=repo, env=_env(), capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExpShowError(f"`dvc exp show` could not run in {repo}: {exc}") from exc
    if done.returncode != 0:
        raise ExpShowError(f"`dvc exp show` failed in {repo}: {done.stderr.strip()[-2000:]}")
    try:
        records = json.loads(done.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise ExpShowError(f"`dvc exp show --json` printed no JSON: {done.stdout[:300]}") from exc
    return records if isinstance(records, list) else []


def load_experiments(
    repo: str | Path, all_commits: bool = False, rev: str | None = None
) -> pd.DataFrame:
    return add_scores(parse_exp_show(run_exp_show(repo, all_commits=all_commits, rev=rev)), repo)


def add_scores(frame: pd.DataFrame, repo: str | Path) -> pd.DataFrame:
    """The rows of ``parse_exp_show``, with the scores of ``metrics/scores.json`` of each."""
    return with_scores(frame, read_scores(Path(repo), frame))


def read_scores(repo: Path, frame: pd.DataFrame) -> dict[str, dict]:
    """``metrics/scores.json`` of every row with results of its own, by rev: the workspace's
    file, and the commits' in one ``git cat-file --batch`` (an experiment is a commit)."""
    own = frame[frame["state"].isin(OWN_RESULT_STATES)] if len(frame) else frame
    scores: dict[str, dict] = {}
    if (own["rev"] == WORKSPACE).any() and (repo / SCORE_METRICS).is_file():
        scores[WORKSPACE] = json.loads((repo / SCORE_METRICS).read_text())
    revs = sorted({r for r in own["rev"] if r and r != WORKSPACE})
    if not revs:
        return scores
    wanted = "".join(f"{r}:{SCORE_METRICS.as_posix()}\n" for r in revs).encode()
    batch = git(repo, "cat-file", "--batch", stdin=wanted).stdout
    for rev in revs:  # "<sha> blob <size>\n<content>\n", or "<name> missing\n"
        header, _, batch = batch.partition(b"\n")
        if not header:  # git failed (not a repository): no scores, as for a missing file
            break
        if not header.endswith(b"missing"):
            size = int(header.rsplit(b" ", 1)[1])
            with contextlib.suppress(ValueError):
                scores[rev] = json.loads(batch[:size])
            batch = batch[size + 1 :]
    return scores


def with_scores(frame: pd.DataFrame, scores: dict[str, dict]) -> pd.DataFrame:
    """The rows, with the scores of their revision (``read_scores``) as metric columns."""
    if not scores:
        return frame
    flat = {rev: flatten(content) for rev, content in scores.items()}
    columns = sorted({key for values in flat.values() for key in values} - set(frame.columns))
    added = pd.DataFrame(
        [[flat.get(rev, {}).get(column) for column in columns] for rev in frame["rev"]],
        columns=columns,
        index=frame.index,
    ).apply(_numeric_results)
    return _ordered(pd.concat([frame, added], axis=1))


def repo_state(repo: str | Path) -> str:
    """A key that changes whenever ``dvc exp show`` could answer differently.

    HEAD and every ``refs/exps`` ref (finished, queued and failed experiments), the run
    records of queue workers (queued → running), and the workspace's lock, params and metrics
    files (a ``dvc repro`` or ``dvc exp apply`` in the workspace).
    """
    repo = Path(repo)
    parts = [
        git(repo, "rev-parse", "HEAD").stdout,
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").stdout,
    ]
    watched = [repo / "dvc.lock", repo / "params.yaml", repo / PROMOTION_POLICY]
    watched += sorted(repo.glob("metrics/*.json"))
    watched += sorted(repo.glob(".dvc/tmp/exps/run/*/*"))
    for path in watched:
        try:
            parts.append(f"{path}:{path.stat().st_mtime_ns}".encode())
        except OSError:
            continue
    return hashlib.sha256(b"\n".join(parts)).hexdigest()[:16]


def read_repo_file(repo: str | Path, rev: str, path: str) -> bytes | None:
    """A file of the workspace (``rev`` = workspace) or of a commit; None when absent."""
    if rev == WORKSPACE:
        target = Path(repo) / path
        return target.read_bytes() if target.is_file() else None
    done = git(repo, "show", f"{rev}:{path}")
    return done.stdout if done.returncode == 0 else None


def read_plot(repo: str | Path, rev: str, path: str) -> pd.DataFrame | None:
    """A CSV plot file (plots are git-tracked, ``cache: false``) at ``rev``; None if unusable."""
    content = read_repo_file(repo, rev, path)
    if not content:
        return None
    try:
        return pd.read_csv(io.BytesIO(content))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None


# --- parsing ----------------------------------------------------------------------------


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys; lists become JSON text so that every cell is a scalar."""
    if not isinstance(tree, dict):
        return {prefix: json.dumps(tree) if isinstance(tree, list) else tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _error_text(error: Any, where: str = "") -> str | None:
    """``[where: ]type: message`` of a DVC error entry (a dict, or anything else)."""
    if not error:
        return None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("msg") or "unknown error"
        error = f"{kind}: {message}" if kind else message
    return f"{where}: {error}" if where else str(error)


def _files(section: Any) -> Iterator[tuple[str, Any, str | None]]:
    """(path, content, error text) for each file of a params or metrics section."""
    if not isinstance(section, dict):
        return
    for path, entry in section.items():
        entry = entry if isinstance(entry, dict) else {}
        yield path, entry.get("data"), _error_text(entry.get("error"), path)


def _state(record: dict, executor: Any, is_baseline: bool) -> str:
    if is_baseline:
        return WORKSPACE if record.get("rev") == WORKSPACE else "baseline"
    if isinstance(executor, dict) and executor.get("state"):
        return str(executor["state"])
    # An experiment without an executor ran in the workspace and was committed to refs/exps.
    return "failed" if record.get("error") else "success"


def _snapshot(summary: Any) -> dict[str, Any]:
    if not isinstance(summary, dict):
        return {}
    return {column: summary.get(column) for column in SNAPSHOT_COLUMNS}


def _results(data: dict) -> tuple[dict[str, Any], list[str]]:
    """Metrics and data snapshot columns of one revision, and its unreadable files."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for path, content, error in _files(data.get("metrics")):
        if error:
            errors.append(error)
        elif path == DATA_METRICS:
            values.update(_snapshot(content))
        elif path in MODEL_METRICS:
            flat = flatten(content)
            values.update({f"train.{k}" if k in META_COLUMNS else k: v for k, v in flat.items()})
        else:
            values.update(flatten(content, Path(path).stem))
    return values, errors


def _params(data: dict) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for _path, content, error in _files(data.get("params")):
        if error:
            errors.append(error)
        else:
            values.update(flatten(content, PARAMS_PREFIX.rstrip(".")))
    return values, errors


def _row(record: dict, baseline: tuple[str, str], executor: Any, is_baseline: bool) -> dict:
    data: dict = record["data"] if isinstance(record.get("data"), dict) else {}
    state = _state(record, executor, is_baseline)
    rev = str(record.get("rev") or data.get("rev") or "")
    name = record.get("name") or (rev if rev == WORKSPACE else rev[:7])
    errors = [e for e in [_error_text(record.get("error"))] if e]
    params, param_errors = _params(data)
    row = {
        "experiment": name,
        "rev": rev,
        "baseline": baseline[0],
        "baseline_rev": baseline[1],
        "state": state,
        "executor": executor.get("name") if isinstance(executor, dict) else None,
        "created": data.get("timestamp"),
        **params,
    }
    if state in OWN_RESULT_STATES:
        results, file_errors = _results(data)
        row.update(results)
        errors += file_errors
    row["error"] = "; ".join(errors + param_errors) or None
    return row


def same_value(left: Any, right: Any) -> bool:
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (left, right)]
    return all(missing) or (not any(missing) and left == right)


def _changed_params(frame: pd.DataFrame) -> pd.Series:
    """``key=value`` list of the params in which each row differs from its baseline row."""
    params = [c for c in frame.columns if c.startswith(PARAMS_PREFIX)]
    baselines = frame[frame["state"].isin([WORKSPACE, "baseline"])].drop_duplicates("rev")
    by_rev = baselines.set_index("rev")[params] if params else None

    def describe(row: pd.Series) -> str:
        if (
            by_rev is None
            or row["baseline_rev"] not in by_rev.index
            or row["rev"] == row["baseline_rev"]
        ):
            return ""
        reference = by_rev.loc[row["baseline_rev"]]
        changed = [p for p in params if not same_value(row[p], reference[p])]
        return ", ".join(f"{p[len(PARAMS_PREFIX) :]}={row[p]}" for p in changed)

    return frame.apply(describe, axis=1) if len(frame) else pd.Series(dtype=object)


def _numeric_results(column: pd.Series) -> pd.Series:
    """Metric and snapshot columns as numbers where every value is one; params stay as is."""
    if column.name in META_COLUMNS or str(column.name).startswith(PARAMS_PREFIX):
        return column.where(column.notna(), None)
    numbers = pd.to_numeric(column, errors="coerce")
    is_bool = column.map(lambda v: isinstance(v, bool)).any()
    return numbers if numbers.notna().sum() == column.notna().sum() and not is_bool else column


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    snapshot = [c for c in frame.columns if c in SNAPSHOT_COLUMNS]
    params = [c for c in frame.columns if c.startswith(PARAMS_PREFIX)]
    taken = set(META_COLUMNS) | set(snapshot) | set(params)
    metrics = [c for c in frame.columns if c not in taken]
    return frame.reindex(columns=[*META_COLUMNS, *snapshot, *metrics, *params])


def parse_exp_show(records: Any) -> pd.DataFrame:
    """The tidy table of a ``dvc exp show --json`` answer (see the module docstring).

    Never raises on odd input: missing sections, ``error`` instead of ``data``, queued,
    running or failed experiments all become rows with what is known about them.
    """
    rows: list[dict] = []
    records = [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
    commits = [r for r in records if r.get("rev") != WORKSPACE]
    # The workspace's baseline is HEAD, which dvc lists right after the workspace.
    head = commits[0] if commits else {}
    head_key = (head.get("name") or str(head.get("rev", ""))[:7], str(head.get("rev", "")))
    for record in records:
        rev = str(record.get("rev", ""))
        own = (record.get("name") or (rev if rev == WORKSPACE else rev[:7]), rev)
        rows.append(_row(record, head_key if rev == WORKSPACE and head else own, None, True))
        for experiment in record.get("experiments") or []:
            if not isinstance(experiment, dict):
                continue
            for revision in experiment.get("revs") or []:
                if isinstance(revision, dict):
                    revision = {**revision, "name": revision.get("name") or experiment.get("name")}
                    rows.append(_row(revision, own, experiment.get("executor"), False))
    # object dtype first: a param column mixing 8 and null must stay 8, not become 8.0.
    frame = pd.DataFrame(rows, columns=None if rows else META_COLUMNS, dtype=object)
    frame = frame.apply(_numeric_results)
    frame["created"] = pd.to_datetime(frame["created"], errors="coerce")
    frame["changed_params"] = _changed_params(frame)
    return _ordered(frame).reset_index(drop=True)


# --- helpers for the dashboard and the review -----------------------------------------


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(PARAMS_PREFIX)]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric result columns (snapshot excluded), the key metrics first."""
    skip = set(META_COLUMNS) | set(SNAPSHOT_COLUMNS) | set(param_columns(frame))
    numeric = [
        c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
    ]
    return [m for m in KEY_METRICS if m in numeric] + [m for m in numeric if m not in KEY_METRICS]


# On a tie the incumbent stays ahead, and a named experiment beats the workspace that merely
# holds its results (after `dvc exp run`): baseline commit, experiments, workspace.
TIE_ORDER = {"baseline": 0, WORKSPACE: 2}


def without_copied_workspace(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows, minus a workspace that only holds another row's results (the baseline's
    after a checkout, the last experiment's after `dvc exp run`): ranked once, not twice."""
    metrics = [m for m in KEY_METRICS if m in frame.columns]
    if not metrics:
        return frame
    results = frame[metrics].apply(lambda row: tuple(row.fillna(-1.0)), axis=1)
    others = results[(frame["state"] != WORKSPACE) & frame["state"].isin(OWN_RESULT_STATES)]
    copied = (frame["state"] == WORKSPACE) & results.isin(set(others))
    return frame[~copied]


def ranking(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows with results of their own, baselines and workspace included, best first."""
    if metric not in frame.columns:
        return frame.iloc[0:0]
    ranked = without_copied_workspace(frame[frame["state"].isin(OWN_RESULT_STATES)]).assign(
        _value=lambda f: pd.to_numeric(f[metric], errors="coerce"),
        _tie=lambda f: f["state"].map(TIE_ORDER).fillna(1),
    )
    ranked = ranked.dropna(subset=["_value"])
    ranked = ranked.sort_values(
        ["_value", "_tie"], ascending=[not higher_is_better(metric), True], kind="stable"
    )
    return ranked.drop(columns=["_value", "_tie"])


def best_row(frame: pd.DataFrame, metric: str) -> pd.Series | None:
    """The row with the best ``metric``, the baseline and the workspace competing too (an
    experiment worse than ``main`` is never "best"); None if no row has the metric."""
    ranked = ranking(frame, metric)
    return None if ranked.empty else ranked.iloc[0]
