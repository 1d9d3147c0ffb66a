"""Promote a trained model behind the gate, restore the committed champion, roll back:
``baac promote`` and ``baac rollback`` (``make promote``, ``make rollback``, ``make run``).

``baac promote`` takes the workspace model (``model/``); ``--experiment NAME`` takes a DVC
experiment's (``decisions/candidate.py``). If it passes the gate (``decisions/gate.py``; or
``--force --reason TEXT``, recorded), it becomes the champion:

- ``models/``: the model, its ``metadata.json`` (everything in ``model_info.json`` plus the
  registry version, the experiment, the commit and the gate's verdict, nothing per machine or
  per run, so that the same promotion gives the same bytes in every clone) and its per-row
  predictions, tracked by ``models.dvc``;
- a new version in ``registry.json`` (``decisions/registry.py``), the report in
  ``reports/promotions/``; it prints the ``git add … && git commit`` line that records them;
- with a default DVC remote (a team's), ``models/`` pushed there: any clone can then restore
  any version of the registry.

**A fresh clone** has ``models.dvc`` and ``registry.json`` but no ``models/``. When the workspace
model is the registry's champion (training is deterministic: the committed code, params and
data give the same bytes), ``models/`` is rebuilt from it and must hash to what
``models.dvc`` records: the champion is restored, not re-promoted, and git stays clean. Any
other champion comes from the DVC remote (``dvc pull models.dvc``).

**Atomicity.** Everything is prepared first in a hidden temporary directory (the new
``models/``, its ``models.dvc`` from ``dvc add``, which also fills the DVC cache, the registry
and the report). Only then is the champion switched: one atomic directory exchange
(``renameat2(RENAME_EXCHANGE)``), then the small files replaced. A promote killed before the
switch leaves the champion as it was (the staged directory is a hidden leftover, removed by the
next run).

**Rollback** makes the registry's ``previous`` the champion again: its ``models.dvc`` (kept in
the registry) is checked out from the DVC cache, or pulled from the remote in another clone.

The BentoML store is not written here: ``make serve`` derives it from ``models/``
(``serving/bento_store.py``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path

import yaml

from baac_severity.config import (
    METADATA_FILENAME,
    MODEL_FILE,
    MODEL_FILENAME,
    MODEL_NAME,
    MODELS_DVC,
    PARAMS_FILE,
    PROMOTED_DIR,
    PROMOTED_PREDICTIONS,
    PROMOTIONS_DIR,
    REGISTRY_FILE,
    ROOT,
)
from baac_severity.data.io import read_json, remove_leftovers, write_json, write_text
from baac_severity.decisions import compare, registry
from baac_severity.decisions.candidate import (
    Candidate,
    StaleDataError,
    checked_bundle,
    current_champion,
    read_candidate,
)
from baac_severity.decisions.gate import Decision, GateRefused, gate
from baac_severity.decisions.registry import RegistryError, Version

# Test hook: SIGKILL this process when it reaches the named step (staged, switched).
KILL_ENV = "BAAC_PROMOTE_KILL_AT"
GATE_EXIT, REFUSED_EXIT = 1, 2


class RestoreError(RuntimeError):
    """The committed champion cannot be restored in this clone."""


@dataclass
class Options:
    force: bool = False
    reason: str | None = None
    with_dvc: bool = True
    soft_gate: bool = False  # a refused gate keeps the champion and is no error (make run)


# --- the champion's files -------------------------------------------------------------------


def build_metadata(candidate: Candidate, version: Version, feature_schema: dict | None) -> dict:
    """``models/metadata.json``: the model's own record and its registry version, no value
    that differs between clones."""
    info = candidate.info
    return {
        "version": candidate.sha256[:12],
        "model_sha256": candidate.sha256,
        "registry": {"name": MODEL_NAME, "version": version.version},
        "experiment": version.experiment,
        "git_sha": version.git_sha,
        "promotion": {
            "forced": version.forced,
            "reason": version.reason,
            "previous_version": version.previous,
            "report": version.report,
        },
        "target": info["target"],
        "unit": info["unit"],
        "model_name": info["model_name"],
        "classes": info["classes"],
        "labels": info["labels"],
        "features": info["features"],
        "feature_groups": info["feature_groups"],
        "feature_schema": feature_schema,
        "sklearn_version": info["sklearn_version"],
        "decision_weights": info["decision_weights"],
        "metrics": info["metrics"],
        "params": info["params"],
        "data_snapshot": info["data_snapshot"],
    }


def kill_point(step: str) -> None:
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def exchange(first: Path, second: Path) -> None:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    result = libc.renameat2(
        at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first), None, str(second))


def stage_directory() -> Path:
    """A hidden temporary directory next to ``models/`` (a leftover if we are killed)."""
    remove_leftovers(PROMOTED_DIR)
    prefix = f".{PROMOTED_DIR.name}.tmp-"  # baac_severity.data.io's temporary naming
    return Path(tempfile.mkdtemp(dir=".", prefix=prefix))


def dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )


def dvc_add(path: Path) -> str:
    """``dvc add`` the staged directory (fills the cache); returns its ``.dvc`` file's text."""
    done = dvc("add", "-q", str(path))
    if done.returncode != 0:
        raise RuntimeError(f"dvc add {path} failed:\n{done.stderr}")
    return path.with_name(f"{path.name}.dvc").read_text()


def dir_md5(dvc_file_text: str) -> str:
    return yaml.safe_load(dvc_file_text)["outs"][0]["md5"]


def stage_models(stage: Path, candidate: Candidate, metadata: dict) -> Path:
    staged = stage / PROMOTED_DIR.name
    staged.mkdir()
    (staged / MODEL_FILENAME).write_bytes(candidate.model)
    write_json(metadata, staged / METADATA_FILENAME)
    if candidate.predictions_file is not None:
        (staged / PROMOTED_PREDICTIONS.name).write_bytes(candidate.predictions_file)
    return staged


def switch(stage: Path, files: list[Path]) -> None:
    """Make the staged ``models/`` the champion's, then the staged small files (the stage
    holds each under its base name) the repository's."""
    staged = stage / PROMOTED_DIR.name
    os.chmod(stage, 0o755)
    if PROMOTED_DIR.exists():
        try:
            exchange(staged, PROMOTED_DIR)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            # No atomic exchange on this file system: two renames, microseconds apart.
            os.replace(PROMOTED_DIR, stage / "old")
            os.replace(staged, PROMOTED_DIR)
    else:
        os.replace(staged, PROMOTED_DIR)
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / path.name, path)


# --- promote -------------------------------------------------------------------------------


def report_path(version: int, experiment: str, kind: str = "promote") -> Path:
    return PROMOTIONS_DIR / f"{kind}-v{version}-{experiment}.md"


def promotion_report(metadata: dict, decision: Decision) -> str:
    promotion = metadata["promotion"]
    verdict = "passed the gate" if decision.passed else "**did not pass the gate: forced**"
    lines = [
        f"# Promotion: {metadata['experiment']} → champion",
        "",
        f"- Model `{metadata['model_name']}`, target `{metadata['target']}`, model sha256 "
        f"`{metadata['model_sha256'][:16]}…` (its MLflow run has this `model.sha256` tag), "
        f"git commit `{metadata['git_sha'][:12]}`",
        f"- Registry ({REGISTRY_FILE}): version {metadata['registry']['version']} (previous "
        f"champion: {promotion['previous_version'] or 'none'})",
        f"- Data snapshot: dataset sha256 `{metadata['data_snapshot']['dataset_sha256']}`",
        f"- Decision: {verdict}",
        *(f"  - {line}" for line in decision.reasons),
    ]
    if promotion["reason"] is not None:
        lines.append(f"- Forced, reason: {promotion['reason']}")
    return "\n".join([*lines, "", "## Comparison", "", decision.report, ""])


def commit_hint(paths: list[Path], message: str) -> str:
    quoted = message.replace("'", "'\\''")
    return f"git add {' '.join(map(str, paths))} && git commit -m '{quoted}'"


def record_hint(candidate: Candidate, report: Path, message: str) -> str:
    """What to commit, only once the workspace's params.yaml and dvc.lock describe the
    promoted run: an experiment's model promoted from another workspace is applied first."""
    paths = [
        PARAMS_FILE,
        Path("dvc.lock"),
        Path("metrics"),
        Path("plots"),
        MODELS_DVC,
        REGISTRY_FILE,
        report,
    ]
    held = MODEL_FILE.is_file() and candidate.sha256 == sha256(MODEL_FILE.read_bytes()).hexdigest()
    if held:
        return "record it:\n  " + commit_hint(paths, message)
    return (
        f"the workspace (params.yaml, dvc.lock, model/) holds another run than {candidate.name}: "
        f"bring the promoted run in, then record it:\n  dvc exp apply {candidate.name}\n  "
        + commit_hint(paths, message)
    )


def restore(entry: Version, candidate: Candidate, feature_schema: dict | None) -> None:
    """Bring the registry's champion into a clone that has ``models.dvc`` but no ``models/``:
    rebuilt from the workspace model when it is the champion, and checked against
    ``models.dvc``; otherwise pulled from the DVC remote."""
    committed = MODELS_DVC.read_text() if MODELS_DVC.is_file() else entry.models_dvc
    if candidate.experiment is None and candidate.sha256 == entry.model_sha256:
        stage = stage_directory()
        try:
            metadata = build_metadata(candidate, entry, feature_schema)
            staged = stage_models(stage, candidate, metadata)
            rebuilt = dir_md5(dvc_add(staged))
            if rebuilt != dir_md5(committed):
                raise RestoreError(
                    f"the workspace model is champion v{entry.version} (sha256 "
                    f"{entry.model_sha256[:16]}…) but its {PROMOTED_DIR}/ hashes to {rebuilt}, "
                    f"not {dir_md5(committed)} as {MODELS_DVC} records: run `dvc pull "
                    f"{MODELS_DVC}` from the team's DVC remote"
                )
            switch(stage, [])  # models.dvc is the committed one, untouched
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        print(
            f"restored champion v{entry.version} ({entry.experiment}) into {PROMOTED_DIR}/ from "
            f"the workspace model (same sha256; {MODELS_DVC} matches, md5 {rebuilt})"
        )
        return
    pulled = dvc("pull", "-q", str(MODELS_DVC))
    if pulled.returncode != 0:
        raise RestoreError(
            f"{PROMOTED_DIR}/ is missing and the workspace model is not champion "
            f"v{entry.version} ({entry.experiment}, sha256 {entry.model_sha256[:16]}…): "
            f"`dvc pull {MODELS_DVC}` failed (is the team's DVC remote set? "
            f"docs/experiments.md):\n{pulled.stderr.strip()}"
        )
    print(f"pulled champion v{entry.version} ({entry.experiment}) from the DVC remote")


def promote(experiment: str | None, options: Options | None = None) -> dict | None:
    """Promote the workspace model or an experiment's; None when the champion is kept."""
    options = options or Options()
    candidate = read_candidate(experiment)
    bundle = checked_bundle(candidate.model, candidate.info, experiment)  # before any write
    models = registry.load()
    champion = current_champion()
    if champion is None and models.champion_version is not None:
        restore(models.champion_version, candidate, bundle.feature_schema)
        champion = current_champion()
    if champion is not None and champion.metadata.get("model_sha256") == candidate.sha256:
        print(f"{candidate.name} is already the champion ({PROMOTED_DIR}/): nothing to do")
        return None
    decision = gate(candidate, champion)
    print(decision.report)
    if not decision.passed:
        summary = "; ".join(decision.reasons)
        if not options.force:
            raise GateRefused(f"{candidate.name} is not promoted: {summary}")
        print(f"\nforced past the gate: {summary}\nreason: {options.reason}")
    number = models.next_number
    report = report_path(number, candidate.name)
    version = Version(
        version=number,
        experiment=candidate.name,
        model_sha256=candidate.sha256,
        git_sha=candidate.rev,
        dataset_sha256=candidate.info["data_snapshot"]["dataset_sha256"],
        forced=not decision.passed,
        reason=options.reason,
        previous=models.champion,
        report=str(report),
        models_dvc="",
    )
    metadata = build_metadata(candidate, version, bundle.feature_schema)
    stage = stage_directory()
    try:
        staged = stage_models(stage, candidate, metadata)
        if options.with_dvc:
            version = replace(version, models_dvc=dvc_add(staged))
        registry.save(models.promote(version), stage / REGISTRY_FILE.name)
        write_text(promotion_report(metadata, decision), stage / report.name)
        kill_point("staged")
        switch(stage, [*([MODELS_DVC] if options.with_dvc else []), REGISTRY_FILE, report])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    kill_point("switched")
    if options.with_dvc:
        print(push_to_remote())
    print(
        f"promoted {version.experiment} ({metadata['model_name']}, target "
        f"{metadata['target']}) -> {PROMOTED_DIR}/, registry version {number}; `make serve` "
        "serves it"
    )
    if options.with_dvc:
        print(record_hint(candidate, report, f"Promote {version.experiment} (registry v{number})"))
    return metadata


def push_to_remote() -> str:
    """``dvc push models.dvc`` when the repository has a default DVC remote (a team's), so
    that every registry version can be restored in every clone; said in words."""
    default = dvc("remote", "default")  # exit 1: no default remote
    remote = default.stdout.strip()
    if default.returncode != 0 or not remote:
        return (
            f"no default DVC remote: this champion stays in this clone's DVC cache (`dvc remote "
            f"add -d NAME URL`, then `dvc push {MODELS_DVC}`, to share it)"
        )
    pushed = dvc("push", "-q", str(MODELS_DVC))
    if pushed.returncode != 0:
        return f"dvc push {MODELS_DVC} to {remote!r} failed, run it again:\n{pushed.stderr}"
    return f"pushed {PROMOTED_DIR}/ to the DVC remote {remote!r}"


# --- rollback ------------------------------------------------------------------------------


def checkout(dvc_file: Path) -> None:
    """``models/`` of ``dvc_file`` from the DVC cache, else from the remote (another clone)."""
    if dvc("checkout", "-q", str(dvc_file)).returncode == 0:
        return
    pulled = dvc("pull", "-q", str(dvc_file))
    if pulled.returncode != 0:
        raise RestoreError(
            f"the previous champion is neither in the DVC cache nor on the remote:\n"
            f"{pulled.stderr.strip()}"
        )


def rollback() -> dict:
    """Make the registry's ``previous`` version the champion again."""
    models = registry.load()
    current, rolled = models.champion, models.roll_back()
    target = rolled.champion_version
    assert target is not None  # roll_back checked it
    if not target.models_dvc:
        raise RegistryError(f"registry version {target.version} records no models.dvc")
    report = report_path(target.version, target.experiment, "rollback")
    stage = stage_directory()
    try:
        write_text(target.models_dvc, stage / MODELS_DVC.name)
        checkout(stage / MODELS_DVC.name)
        metadata = read_json(stage / PROMOTED_DIR.name / METADATA_FILENAME)
        registry.save(rolled, stage / REGISTRY_FILE.name)
        write_text(
            f"# Rollback: registry version {current} → {target.version}\n\n"
            f"- Champion again: {target.experiment} (version {target.version}, model sha256 "
            f"`{target.model_sha256[:16]}…`), restored byte for byte through DVC.\n"
            f"- `previous` now names version {current}: `make rollback` again undoes this.\n",
            stage / report.name,
        )
        kill_point("staged")
        switch(stage, [MODELS_DVC, REGISTRY_FILE, report])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"rolled back to registry version {target.version} ({target.experiment})")
    message = f"Roll back to {target.experiment} (registry v{target.version})"
    print("record it:\n  " + commit_hint([MODELS_DVC, REGISTRY_FILE, report], message))
    return metadata


# --- command line ---------------------------------------------------------------------------


def run(experiment: str | None, options: Options, rollback_instead: bool = False) -> int:
    """``baac promote`` (``baac rollback`` with ``rollback_instead``): the exit status, 0,
    ``GATE_EXIT`` (the gate refused) or ``REFUSED_EXIT`` (nothing written)."""
    os.chdir(ROOT)
    from baac_severity.modeling.model_store import FeatureSchemaError, ModelVersionError

    try:
        if rollback_instead:
            rollback()
        else:
            promote(experiment, options)
    except GateRefused as refused:
        print(f"\npromote: {refused}", file=sys.stderr)
        if options.soft_gate:
            print("promote: the champion is kept", file=sys.stderr)
            return 0
        print("promote: nothing changed; --force --reason TEXT overrides", file=sys.stderr)
        return GATE_EXIT
    except (
        FeatureSchemaError,
        ModelVersionError,
        StaleDataError,
        RegistryError,
        RestoreError,
        compare.CompareError,
    ) as error:
        command = "rollback" if rollback_instead else "promote"
        print(f"{command}: refusing to {command}: {error}", file=sys.stderr)
        return REFUSED_EXIT
    return 0
