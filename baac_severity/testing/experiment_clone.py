"""A repository with experiments in seconds: a ``git clone`` of this one's HEAD (its committed
metrics and plot files) and experiment commits under ``refs/exps`` written with git plumbing,
as ``dvc exp run`` leaves them. The dashboard's browser tests and benchmark open it."""

from __future__ import annotations

import json
from pathlib import Path

from baac_severity.config import ROOT
from baac_severity.data.io import git_text as git


def build_repo(dest: Path, count: int) -> Path:
    """A clone of HEAD with ``count`` experiment commits under ``refs/exps``.

    Each is what ``dvc exp run`` leaves: a commit on top of the baseline with the experiment's
    ``params.yaml`` and metrics, under ``refs/exps/<baseline sha[:2]>/<sha[2:]>/<name>``.
    Written with git plumbing: ``dvc exp save`` would need the data and model outputs, which a
    clone does not have, and training 30 models would take half an hour.
    """
    git(ROOT, "clone", "--quiet", str(ROOT), str(dest))
    head = git(dest, "rev-parse", "HEAD")
    params, metrics = dest / "params.yaml", dest / "metrics" / "train.json"
    original_params, original_metrics = params.read_text(), json.loads(metrics.read_text())
    author = ["-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    for i in range(count):
        trees = 50 * (1 + i % 6)
        params.write_text(original_params.replace("n_estimators: 100", f"n_estimators: {trees}"))
        changed = json.loads(json.dumps(original_metrics))
        for split in ("validation", "test"):
            changed[split]["roc_auc"] = round(changed[split]["roc_auc"] + 0.0005 * (i % 7 - 3), 6)
        metrics.write_text(json.dumps(changed, indent=2) + "\n")
        git(dest, "add", "params.yaml", "metrics/train.json")
        tree = git(dest, "write-tree")
        commit = git(dest, *author, "commit-tree", tree, "-p", head, "-m", f"exp-{i:02d}")
        git(dest, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/exp-{i:02d}", commit)
    git(dest, "reset", "--quiet", "--hard", head)
    return dest
