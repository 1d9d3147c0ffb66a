"""``make retrain``: a newly arrived chunk, from ingestion to the promotion gate.

1. ingests the next chunk: ``dvc exp run --temp -n retrain-chunk-NNNN -S ingest.chunks=N``
   runs the whole pipeline as an experiment (ingest, clean, split, train, out-of-time, drift)
   in a temporary directory: the workspace keeps the champion's state meanwhile;
2. prints what the monitoring stages say about the new chunk (drift share, out-of-time
   ROC-AUC), read from the experiment's commit;
3. puts the challenger through the promotion gate, ``baac promote --experiment
   NAME``, which compares it with the champion on the validation rows both
   scored (the challenger was trained on one chunk more: ``decisions/comparable.py``), and
   exits with its status;
4. promoted: ``dvc exp apply NAME`` brings the challenger's params, lock, model and metrics
   into the workspace, and it prints what to commit. Refused: nothing in the workspace
   changed (``params.yaml``, ``dvc.lock``, ``model/``, ``git status``), the experiment is kept
   under its name.

The loop it belongs to is described in docs/monitoring.md.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

from baac_severity.config import (
    DRIFT_PLOT,
    MODELS_DVC,
    OUT_OF_TIME_PLOT,
    PROGRESS_FILE,
    REGISTRY_FILE,
    ROOT,
    drift_report,
)
from baac_severity.data.io import read_json, write_text
from baac_severity.data.progress import next_chunk_count
from baac_severity.decisions import experiments as ex
from baac_severity.decisions.candidate import experiment_commit


def run(command: list[str]) -> int:
    print(f"retrain: $ {' '.join(command)}", flush=True)
    return subprocess.run(command).returncode


def chunk_row(commit: str, plot: Path, chunk: int) -> dict | None:
    """The row of ``chunk`` in a monitoring stage's per-chunk plot file at the experiment's
    commit (``--temp``: the workspace does not have it)."""
    content = ex.read_repo_file(ROOT, commit, plot.as_posix())
    if not content:
        return None
    rows = pd.read_csv(io.BytesIO(content))
    rows = rows[rows["chunk"] == chunk]
    return None if rows.empty else rows.iloc[0].to_dict()


def chunk_report(chunk: int, commit: str) -> None:
    drift = chunk_row(commit, DRIFT_PLOT, chunk)
    oot = chunk_row(commit, OUT_OF_TIME_PLOT, chunk)
    if drift:
        share, rate = drift["share_drifted"], drift["target_rate"]
        report = drift_report(chunk)
        print(f"retrain: chunk {chunk}: drift share {share}, severe rate {rate} ({report})")
    if oot:
        print(
            f"retrain: chunk {chunk}: out-of-time ROC-AUC {oot['roc_auc']} (trained on earlier "
            f"chunks), estimated without labels {oot['estimated_roc_auc']}"
        )


def apply_keeping_champion(name: str) -> int:
    """``dvc exp apply NAME``: the workspace's params, lock, model and metrics become the
    promoted run's. The experiment's commit holds the *previous* champion's models.dvc and
    registry, so the ones the promotion just wrote are put back, and models/ checked out (its
    data is in the DVC cache)."""
    promoted = {path: path.read_text() for path in (MODELS_DVC, REGISTRY_FILE)}
    status = run([sys.executable, "-m", "dvc", "exp", "apply", name])
    for path, text in promoted.items():
        write_text(text, path)
    return status or run([sys.executable, "-m", "dvc", "checkout", "-q", str(MODELS_DVC)])


def retrain(name: str | None = None) -> int:
    """``baac retrain``: the exit status of the gate, or of the experiment if it failed."""
    progress = read_json(PROGRESS_FILE, default={})
    chunks = progress.get("chunks") or {}
    if chunks and chunks["ingested"] >= chunks["total"]:
        print(
            f"retrain: every chunk is in ({chunks['ingested']}/{chunks['total']}): "
            "add the new raw data first (baac_severity.data.fetch, dvc add data/raw)"
        )
        return 0
    chunk = next_chunk_count(progress)
    name = name or f"retrain-chunk-{chunk:04d}"
    # --temp: the workspace keeps the champion's params, lock and model unless promoted.
    experiment = ["exp", "run", "--temp", "-n", name, "-S", f"ingest.chunks={chunk}"]
    status = run([sys.executable, "-m", "dvc", *experiment])
    if status != 0:
        print(f"retrain: the experiment failed (exit {status}); nothing promoted")
        return status
    chunk_report(chunk, experiment_commit(name))
    # The gate prints the comparison with the champion (validation, and paired intervals).
    status = run([sys.executable, "-m", "baac_severity.cli", "promote", "--experiment", name])
    if status == 0:
        status = apply_keeping_champion(name)
    if status == 0:
        print("retrain: promoted, and applied to the workspace. To commit:\n"
              "  git add params.yaml dvc.lock models.dvc registry.json metrics/ plots/ \\\n"
              "      reports/promotions/\n"
              f"  git commit -m 'Retrain on chunk {chunk} ({name})'\n"
              "  dvc push   # the model and data, to your DVC remote\n"
              "then restart the service (make serve) and watch it: make monitor")  # fmt: skip
    else:
        keep, drop = f"dvc exp branch {name} exp/{name}", f"dvc exp remove {name}"
        print(
            f"retrain: {name} not promoted (exit {status}); the champion stays, the "
            "workspace is as it was."
        )
        print(f"retrain: to keep the run: {keep}; to drop it: {drop}")
    return status
