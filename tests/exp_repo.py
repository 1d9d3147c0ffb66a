"""Real DVC experiments in a throwaway repository (see ``pipeline_repo.make_pipeline_repo``).

Shared by ``tests/test_experiments.py`` and ``tests/record_exp_show.py`` (which records the
``dvc exp show --json`` fixtures under ``tests/fixtures/exp_show/``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from baac_severity.testing.sandbox import dvc, env, make_pipeline_repo, run

# Params of the experiments every scenario starts with; they only re-run the train stage.
WORKSPACE_EXPERIMENT = ("exp-trees10", ["model.n_estimators=10"])
QUEUED_EXPERIMENTS = [
    ("exp-depth8", ["model.max_depth=8"]),
    ("exp-leaf30", ["model.min_samples_leaf=30"]),
]
FAILING_EXPERIMENT = ("exp-bad", ["model.n_estimators=-1"])


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


def baseline_repo(dest: Path) -> Path:
    """The small pipeline repo, reproduced and committed: experiments re-run only ``train``."""
    make_pipeline_repo(dest)
    dvc("repro", "-q", cwd=dest)
    commit(dest, "baseline run")
    return dest


def exp_run(repo: Path, name: str, overrides: list[str], queue: bool = False) -> None:
    sets = [arg for override in overrides for arg in ("-S", override)]
    dvc("exp", "run", "-q", *(["--queue"] if queue else []), "-n", name, *sets, cwd=repo)


def exp_show(repo: Path, *args: str) -> list[dict]:
    return json.loads(dvc("exp", "show", "--json", *args, cwd=repo).stdout)


def states(records: list[dict]) -> dict[str, str]:
    """{experiment name: executor state or 'done'} of a ``dvc exp show --json`` answer."""
    found = {}
    for baseline in records:
        for experiment in baseline.get("experiments") or []:
            executor = experiment.get("executor") or {}
            found[experiment.get("name")] = executor.get("state") or "done"
    return found


def queue_start(repo: Path, workers: int = 1) -> None:
    """``dvc queue start``, its output not captured: the worker it spawns inherits stdout and
    stderr, so a captured run would block until the worker exits."""
    subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "start", "-j", str(workers)],
        cwd=repo,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )


def wait_for_queue(repo: Path, timeout: float = 600) -> None:
    """Poll ``dvc queue status`` until nothing is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(2)
    raise TimeoutError(f"dvc queue still busy after {timeout} s:\n{status}")


def experiment_repo(dest: Path, workers: int = 2) -> Path:
    """A baseline plus three successful experiments: one in the workspace, two via the queue."""
    baseline_repo(dest)
    exp_run(dest, *WORKSPACE_EXPERIMENT)
    for name, overrides in QUEUED_EXPERIMENTS:
        exp_run(dest, name, overrides, queue=True)
    queue_start(dest, workers)
    wait_for_queue(dest)
    return dest
