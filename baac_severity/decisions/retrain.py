"""``make retrain``: a newly arrived chunk, from ingestion to the promotion gate.

1. ingests the next chunk: ``dvc exp run -n retrain-chunk-NNNN -S ingest.chunks=N`` runs the
   whole pipeline as an experiment (ingest, clean, split, train, out-of-time, drift);
2. prints what the monitoring stages say about the new chunk (drift share, out-of-time
   ROC-AUC) and the challenger's test metrics next to the champion's (``models/``);
3. puts the challenger through the promotion gate, ``baac promote --experiment NAME``, and
   exits with its status (0: promoted; otherwise the champion stays);
4. prints what to commit.

The loop it belongs to is described in docs/monitoring.md.
"""

from __future__ import annotations

import subprocess
import sys

from baac_severity.config import (
    DRIFT_METRICS,
    OUT_OF_TIME_METRICS,
    PROGRESS_FILE,
    chunk_key,
    drift_report,
)
from baac_severity.data.io import read_json
from baac_severity.data.progress import next_chunk_count


def run(command: list[str]) -> int:
    print(f"retrain: $ {' '.join(command)}", flush=True)
    return subprocess.run(command).returncode


def chunk_report(chunk: int) -> None:
    name = chunk_key(chunk)
    drift = (read_json(DRIFT_METRICS, default={}).get("drift") or {}).get(name)
    oot = (read_json(OUT_OF_TIME_METRICS, default={}).get("out_of_time") or {}).get(name)
    if drift:
        share, rate = drift["share_drifted"], drift["target_rate"]
        report = drift_report(chunk)
        print(f"retrain: chunk {chunk}: drift share {share}, severe rate {rate} ({report})")
    if oot:
        roc_auc = oot["roc_auc"]
        print(f"retrain: chunk {chunk}: out-of-time ROC-AUC {roc_auc} (trained on earlier chunks)")


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
    experiment = ["exp", "run", "-n", name, "-S", f"ingest.chunks={chunk}"]
    status = run([sys.executable, "-m", "dvc", *experiment])
    if status != 0:
        print(f"retrain: the experiment failed (exit {status}); nothing promoted")
        return status
    chunk_report(chunk)
    # The gate prints the comparison with the champion (validation, and paired intervals).
    status = run([sys.executable, "-m", "baac_severity.cli", "promote", "--experiment", name])
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
