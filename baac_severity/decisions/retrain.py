"""``make retrain``: a newly arrived chunk, from ingestion to the promotion gate.

1. ingests the next chunk: ``dvc exp run -n retrain-chunk-NNNN -S ingest.chunks=N`` runs the
   whole pipeline as an experiment (ingest, clean, split, train, out-of-time, drift);
2. prints what the monitoring stages say about the new chunk (drift share, out-of-time
   ROC-AUC) and the challenger's test metrics next to the champion's (``models/``);
3. puts the challenger through the promotion gate, ``python -m baac_severity.decisions.promote
   --experiment NAME``, and exits with its status (0: promoted; otherwise the champion stays);
4. prints what to commit.

The loop it belongs to is described in docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from baac_severity.config import (
    DRIFT_PLOT,
    OUT_OF_TIME_PLOT,
    PROGRESS_FILE,
    drift_report,
)
from baac_severity.data.io import read_json
from baac_severity.data.progress import next_chunk_count


def run(command: list[str]) -> int:
    print(f"retrain: $ {' '.join(command)}", flush=True)
    return subprocess.run(command).returncode


def chunk_row(plot: Path, chunk: int) -> dict | None:
    """The row of ``chunk`` in a monitoring stage's per-chunk plot file."""
    if not plot.is_file():
        return None
    rows = pd.read_csv(plot)
    rows = rows[rows["chunk"] == chunk]
    return None if rows.empty else rows.iloc[0].to_dict()


def chunk_report(chunk: int) -> None:
    drift = chunk_row(DRIFT_PLOT, chunk)
    oot = chunk_row(OUT_OF_TIME_PLOT, chunk)
    if drift:
        share, rate = drift["share_drifted"], drift["target_rate"]
        report = drift_report(chunk)
        print(f"retrain: chunk {chunk}: drift share {share}, severe rate {rate} ({report})")
    if oot:
        print(
            f"retrain: chunk {chunk}: out-of-time ROC-AUC {oot['roc_auc']} (trained on earlier "
            f"chunks), estimated without labels {oot['estimated_roc_auc']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.decisions.retrain",
        description="Ingest the next chunk, run the pipeline as a DVC experiment, and put the "
        "challenger through the promotion gate (baac_severity.decisions.promote --experiment).",
    )
    parser.add_argument("--name", help="experiment name (default: retrain-chunk-NNNN)")
    args = parser.parse_args(argv)
    progress = read_json(PROGRESS_FILE, default={})
    chunks = progress.get("chunks") or {}
    if chunks and chunks["ingested"] >= chunks["total"]:
        print(
            f"retrain: every chunk is in ({chunks['ingested']}/{chunks['total']}): "
            "add the new raw data first (baac_severity.data.fetch, dvc add data/raw)"
        )
        return 0
    chunk = next_chunk_count(progress)
    name = args.name or f"retrain-chunk-{chunk:04d}"
    experiment = ["exp", "run", "-n", name, "-S", f"ingest.chunks={chunk}"]
    status = run([sys.executable, "-m", "dvc", *experiment])
    if status != 0:
        print(f"retrain: the experiment failed (exit {status}); nothing promoted")
        return status
    chunk_report(chunk)
    # The gate prints the comparison with the champion (validation, and paired intervals).
    status = run([sys.executable, "-m", "baac_severity.decisions.promote", "--experiment", name])
    if status == 0:
        print("retrain: promoted. To commit:\n"
              "  git add params.yaml dvc.lock models.dvc metrics/ plots/ reports/promotions/\n"
              f"  git commit -m 'Retrain on chunk {chunk} ({name})'\n"
              "  dvc push   # the model and data, to your DVC remote\n"
              "then restart the service (make serve) and watch it: make monitor")  # fmt: skip
    else:
        keep, drop = f"dvc exp branch {name} exp/{name}", f"dvc exp remove {name}"
        print(f"retrain: {name} not promoted (gate exit {status}); the champion stays.")
        print(f"retrain: to keep the run: {keep}; to drop it: {drop}")
    return status


if __name__ == "__main__":
    sys.exit(main())
