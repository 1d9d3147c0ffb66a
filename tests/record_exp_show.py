"""Record the ``dvc exp show --json`` fixtures of ``tests/fixtures/exp_show/`` from real runs.

    uv run python -m tests.record_exp_show [--keep DIR]

Builds a throwaway pipeline repository (2 chunks of 2,000 accidents of 2018, 20 trees), runs
real experiments and saves what ``dvc exp show --json`` answers at each step (~3 min):

- ``no_experiments.json``: workspace + baseline after ``dvc repro`` and a commit;
- ``queued.json``: one finished experiment and two queued ones (one will fail);
- ``running.json``: the queue worker busy with the first queued experiment;
- ``success_failed.json``: two successful experiments and a failed one (n_estimators=-1);
- ``file_error.json``: HEAD's ``metrics/train.json`` committed corrupted;
- ``all_commits.json``: ``-A`` over three commits, experiments on two of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from baac_severity.config import ROOT
from tests.exp_repo import (
    FAILING_EXPERIMENT,
    QUEUED_EXPERIMENTS,
    WORKSPACE_EXPERIMENT,
    baseline_repo,
    commit,
    exp_run,
    exp_show,
    queue_start,
    states,
    wait_for_queue,
)

FIXTURES = ROOT / "tests" / "fixtures" / "exp_show"


def save(name: str, records: list[dict]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / name).write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    print(f"recorded {name}: {sorted(states(records).items())}")


def capture_running(repo: Path, timeout: float = 120) -> list[dict]:
    """``dvc exp show`` as soon as a queue worker reports an experiment running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = exp_show(repo)
        if "running" in states(records).values():
            return records
        time.sleep(0.5)
    raise TimeoutError("no experiment was seen running")


def record(repo: Path) -> None:
    baseline_repo(repo)
    save("no_experiments.json", exp_show(repo))
    exp_run(repo, *WORKSPACE_EXPERIMENT)
    exp_run(repo, *QUEUED_EXPERIMENTS[0], queue=True)
    exp_run(repo, *FAILING_EXPERIMENT, queue=True)
    save("queued.json", exp_show(repo))
    queue_start(repo, 1)
    save("running.json", capture_running(repo))
    wait_for_queue(repo)
    save("success_failed.json", exp_show(repo))
    # A commit whose metrics file no longer parses: dvc reports an error for that file.
    (repo / "metrics" / "train.json").write_text('{"test": {"roc_auc": 0.8')
    commit(repo, "corrupted train metrics")
    save("file_error.json", exp_show(repo))
    exp_run(repo, "exp-repaired", ["model.n_estimators=15"])
    save("all_commits.json", exp_show(repo, "-A"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the repository here and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        record(args.keep)
        return 0
    with tempfile.TemporaryDirectory(prefix="exp-show-") as tmp:
        record(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
