"""Build a throwaway copy of this repository in which real ``dvc`` commands can run.

Used by the benchmarks (``bench/stages.py``;
``baac_severity.testing.local_service.small_workspace``, which builds a fresh clone's model for
``bench/load.py``) and the tests: the real pipeline, on the repository's own files, away from the
repository's outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from baac_severity.config import ROOT, compose

VENV_BIN = Path(sys.executable).parent
# A small, fast configuration: real 2018 data, 2 chunks of 2,000 accidents, 20 trees.
SMALL_OVERRIDES = [
    "data.years=[2018]",
    "ingest.chunk_size=2000",
    "ingest.chunks=2",
    "model.n_estimators=20",
]


# A sandbox starts with no champion: the repository's own registry and promotions stay out.
NOT_COPIED = ("dvcstore/", "tests/", "models.dvc", "registry.json", "reports/promotions/")


def env(**extra: str) -> dict[str, str]:
    """The environment of a stage command: the project's interpreter first on PATH, MLflow
    tracking in the repository's own ``mlflow.db`` unless ``extra`` sets another store."""
    variables = dict(os.environ)
    variables["PATH"] = f"{VENV_BIN}{os.pathsep}{variables.get('PATH', '')}"
    variables.update(
        DVC_NO_ANALYTICS="1",
        BENTOML_DO_NOT_TRACK="True",
        MLFLOW_DISABLE_TELEMETRY="true",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@localhost",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@localhost",
    )
    variables.pop("MLFLOW_TRACKING_URI", None)
    return variables | extra


def run(
    args: list[str], cwd: Path, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env(**extra_env), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def dvc(*args: str, cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check, **extra_env)


def write_params(repo: Path, overrides: list[str]) -> None:
    """Keep params.yaml equal to the composed conf/, as `dvc exp run` would write it."""
    params = compose(overrides, repo / "conf")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_pipeline_repo(dest: Path, overrides: list[str] | None = None) -> Path:
    """A git + DVC repo with this project's tracked files, the raw data and small params.

    The overrides are also written into conf/ (config.yaml's ``_self_``) so that
    ``dvc exp run`` composes the same small configuration.
    """
    overrides = SMALL_OVERRIDES if overrides is None else overrides
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file() and not name.startswith(NOT_COPIED):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copytree(ROOT / "data" / "raw", dest / "data" / "raw")
    _bake_overrides(dest, overrides)
    write_params(dest, [])
    (dest / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "test repository"], dest)
    # Cache the raw data so that DVC's temporary executors (--queue, --temp) can check it out.
    dvc("commit", "-q", "-f", "data.dvc", cwd=dest)
    return dest


def _bake_overrides(repo: Path, overrides: list[str]) -> None:
    """Write ``group.key=value`` overrides into the default files of their config groups."""
    defaults = {"data": "bundled", "ingest": "default", "model": "random_forest"}
    for override in overrides:
        dotted, value = override.split("=", 1)
        group, key = dotted.split(".", 1)
        path = repo / "conf" / group / f"{defaults.get(group, 'default')}.yaml"
        config = yaml.safe_load(path.read_text())
        *parents, leaf = key.split(".")
        section = config
        for parent in parents:  # model.light.n_estimators: a key of a nested mapping
            section = section.setdefault(parent, {})
        section[leaf] = yaml.safe_load(value)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
