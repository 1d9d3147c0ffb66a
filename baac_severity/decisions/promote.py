"""Promote a trained model behind a gate, register it, and roll back: ``make promote``.

``baac promote`` takes the workspace model (``model/``);
``--experiment NAME`` takes the model of a DVC experiment, read from the DVC cache at that
experiment's commit, without touching the workspace. ``--rollback`` restores the previous champion.

**The gate.** The challenger replaces the champion (the model in ``models/``) only when

1. it beats the champion on the selection metric (``promotion.metric``, a *validation*
   metric, ``validation.roc_auc`` by default) by more than 0 and at least
   ``promotion.min_delta``, and
2. the paired bootstrap on the test rows both models scored does not show it significantly
   worse on that metric's test counterpart (``roc_auc``; ``baac_severity/decisions/compare.py``).

Otherwise it prints the comparison, changes nothing and exits 1. ``--force --reason TEXT``
overrides; the reason is recorded. The first promotion (no champion) has nothing to pass.

**The registry** is the MLflow Model Registry in ``mlflow.db``: each promotion registers
``runs:/<run_id>/model`` of the training run (found by the model file's sha256, which the
train stage tags the run with) as a new version of ``baac-severity`` and moves the aliases
``champion`` (the new version) and ``previous`` (the old champion). ``models/metadata.json``,
the BentoML model's labels and ``GET /model`` carry the registry version, the run id, the
DVC experiment, the git commit and the data snapshot hash.

**Atomicity.** Everything is prepared first under a hidden temporary directory: the new
``models/`` (model, metadata, per-row predictions), its ``models.dvc`` (``dvc add`` of the
staged copy, which also fills the DVC cache) and an unaliased registry version. Only then is
the champion switched: one atomic directory exchange (``renameat2(RENAME_EXCHANGE)``) and the
replacement of ``models.dvc``; the BentoML import and the registry aliases follow. A promote
killed before the switch leaves the champion as it was (the staged directory is a hidden
leftover, removed by the next run). It writes the comparison to ``reports/promotions/`` and
prints the ``git add … && git commit`` line that records the promotion.

It refuses (exit code 2, nothing written) a model that the current code could not serve as it
was trained: a feature schema that differs from ``baac_severity/features.py``, another
scikit-learn version, or, for the workspace model, training data that ``data/processed`` no
longer holds; and a model whose training run is not in the MLflow store.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from baac_severity.config import (
    DATASET,
    DATASET_USERS,
    METADATA_FILENAME,
    MODEL_FILE,
    MODEL_FILENAME,
    MODEL_INFO,
    PARAMS_FILE,
    PROMOTED_DIR,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    PROMOTED_PREDICTIONS,
    PROMOTIONS_DIR,
    ROOT,
)
from baac_severity.data.io import git_text, remove_leftovers, write_json, write_text
from baac_severity.decisions import comparable, compare
from baac_severity.modeling import tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from baac_severity.modeling.model_store import ModelBundle

BENTO_MODEL_NAME = "baac-severity"
REGISTERED_MODEL = "baac-severity"
CHAMPION, PREVIOUS = "champion", "previous"
MODELS_DVC = Path(f"{PROMOTED_DIR}.dvc")
# Test hook: SIGKILL this process when it reaches the named step (staged, switched).
KILL_ENV = "BAAC_PROMOTE_KILL_AT"
GATE_EXIT, REFUSED_EXIT = 1, 2


class StaleDataError(RuntimeError):
    """The workspace model was trained on other data than ``data/processed`` holds now."""


class RegistryError(RuntimeError):
    """The MLflow registry cannot record this promotion (no training run, store unusable)."""


class GateRefused(RuntimeError):
    """The challenger did not pass the gate; the message is the comparison."""


# --- reading the challenger and the champion ------------------------------------------------


def experiment_commit(name: str) -> str:
    """The commit of a DVC experiment, from its git ref (refs/exps/<baseline>/<name>)."""
    refs = git_text(
        ROOT, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"
    ).splitlines()
    matches = [
        sha for ref, sha in (line.split() for line in refs) if ref.rsplit("/", 1)[-1] == name
    ]
    if not matches:
        known = sorted({line.split()[0].rsplit("/", 1)[-1] for line in refs})
        raise SystemExit(f"no experiment named {name!r}; known experiments: {known or 'none'}")
    return matches[0]


@dataclass
class Candidate:
    """A model to promote: its bytes, ``model_info.json``, git revision and predictions."""

    model: bytes
    info: dict
    rev: str
    experiment: str | None
    predictions_file: bytes | None  # model/predictions.parquet, None for an older model

    @property
    def predictions(self) -> pd.DataFrame | None:
        if self.predictions_file is None:
            return None
        return pd.read_parquet(io.BytesIO(self.predictions_file))

    @property
    def name(self) -> str:
        return self.experiment or "workspace"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def read_model_files(experiment: str | None) -> tuple[bytes, dict, str]:
    """(model bytes, model_info, git revision) of the workspace or an experiment."""
    if experiment is None:
        if not MODEL_FILE.exists():
            raise SystemExit(f"{MODEL_FILE} not found: run `dvc repro` first")
        return (
            MODEL_FILE.read_bytes(),
            json.loads(MODEL_INFO.read_text()),
            git_text(ROOT, "rev-parse", "HEAD"),
        )
    import dvc.api

    rev = experiment_commit(experiment)
    model = dvc.api.read(str(MODEL_FILE), repo=str(ROOT), rev=rev, mode="rb")
    info = json.loads(dvc.api.read(str(MODEL_INFO), repo=str(ROOT), rev=rev))
    return model, info, rev


def read_candidate(experiment: str | None) -> Candidate:
    model, info, rev = read_model_files(experiment)
    try:
        predictions = compare.read_predictions_bytes(".", None if experiment is None else rev)
    except compare.CompareError:
        predictions = None  # a model trained before predictions were written
    return Candidate(model, info, rev, experiment, predictions)


@dataclass
class Champion:
    """The promoted model in ``models/``: its metadata and per-row predictions."""

    metadata: dict
    predictions: pd.DataFrame | None = field(default=None)


def current_champion() -> Champion | None:
    if not PROMOTED_METADATA.is_file() or not PROMOTED_MODEL.is_file():
        return None
    predictions = None
    if PROMOTED_PREDICTIONS.is_file():
        predictions = pd.read_parquet(PROMOTED_PREDICTIONS)
    return Champion(json.loads(PROMOTED_METADATA.read_text()), predictions)


def check_training_data(info: dict) -> None:
    """The workspace model's data snapshot must be the data in ``data/processed``: otherwise
    its metadata would describe a model that ``dvc repro`` no longer produces."""
    snapshot = info["data_snapshot"]
    for path, recorded in (
        (DATASET, snapshot["dataset_sha256"]),
        (DATASET_USERS, snapshot["users_sha256"]),
    ):
        if not path.exists():
            continue  # a workspace without the split outputs: nothing to compare with
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != recorded:
            raise StaleDataError(
                f"{MODEL_FILE} was trained on {path} with sha256 {recorded[:16]}…, "
                f"the file now has sha256 {actual[:16]}…: run `dvc repro train` first"
            )


def checked_bundle(model: bytes, info: dict, experiment: str | None) -> ModelBundle:
    """The model, loaded and checked against the current code (and data, for the workspace)."""
    # Imported here: scikit-learn takes seconds to import, and `import_into_bentoml` (used
    # by the tests and the benchmark to fill a BentoML home) does not need it.
    from baac_severity.modeling.model_store import check_feature_schema, load_model_bytes

    source = MODEL_FILE if experiment is None else f"experiment {experiment}: {MODEL_FILE}"
    bundle = load_model_bytes(model, info, source)
    check_feature_schema(bundle, source)
    if experiment is None:
        check_training_data(info)
    return bundle


# --- the gate ----------------------------------------------------------------------------


@dataclass
class Decision:
    passed: bool
    reasons: list[str]
    report: str  # Markdown: the selection metric, test metrics beside, the bootstrap


def _metric(metrics: dict, dotted: str) -> float | None:
    split, name = dotted.split(".", 1)
    value = (metrics.get(split) or {}).get(name)
    return None if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def gate(candidate: Candidate, champion: Champion | None) -> Decision:
    """Whether ``candidate`` may replace ``champion``, and the comparison as Markdown."""
    name = candidate.name
    if champion is None:
        return Decision(True, ["first promotion: no champion to beat"], "No champion yet.")
    settings = compare.promotion_settings(".")  # the gate's settings: params.yaml promotion
    old = champion.metadata
    old_name = f"champion {old.get('experiment')} (v{registry_version(old) or '?'})"
    metric = settings.metric
    # Like with like (decisions/comparable.py): recorded validation values when both models
    # were validated on the same snapshot, else the validation rows both scored.
    scores = comparable.selection_scores(
        settings,
        (old, champion.predictions),
        (candidate.info, candidate.predictions),
    )
    new_value, old_value = scores.challenger, scores.champion
    reasons: list[str] = []
    if scores.problem:
        reasons.append(f"{name} cannot be compared with the champion: {scores.problem}")
    elif new_value is None or old_value is None:
        reasons.append(f"{metric} is missing for {name if new_value is None else old_name}")
    elif not settings.beats(new_value, old_value):
        reasons.append(
            f"{name} does not beat the champion on {metric}: {new_value:.4f} vs "
            f"{old_value:.4f} (gain {settings.gain(new_value, old_value):+.4f}, needs > 0 "
            f"and >= promotion.min_delta = {settings.min_delta}; {scores.basis})"
        )
    lines = [
        f"Selection metric **{metric}** (validation); test metrics are reported, not chosen on.",
        f"Selection rows: {scores.basis}.",
        "",
        f"| metric | {old_name} | {name} |",
        "|---|---|---|",
        f"| {metric} (selection rows) | {_fmt(old_value)} | {_fmt(new_value)} |",
    ]
    for dotted in [metric, *(f"test.{m}" for m in compare.HEADLINE)]:
        lines.append(
            f"| {dotted} | {_fmt(_metric(old['metrics'], dotted))} | "
            f"{_fmt(_metric(candidate.info['metrics'], dotted))} |"
        )
    if champion.predictions is None or candidate.predictions is None:
        lines += ["", "No paired bootstrap: one of the models has no per-row predictions."]
    else:
        try:
            comparison = compare.compare_predictions(
                champion.predictions, candidate.predictions, settings.bootstrap
            )
        except compare.CompareError as error:
            reasons.append(f"the models cannot be compared on the same test rows: {error}")
            lines += ["", f"No paired bootstrap: {error}."]
        else:
            lines += ["", compare.markdown_table(comparison, "champion", name)]
            check = comparison.intervals[settings.test_metric]
            if check.verdict == "worse":
                reasons.append(
                    f"{name} is significantly worse on test {settings.test_metric}: "
                    f"{check.describe()}"
                )
    return Decision(not reasons, reasons, "\n".join(lines))


# --- the registry (MLflow) -------------------------------------------------------------------


def mlflow_client() -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    uri = tracking.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_run(client: MlflowClient, model_sha256: str) -> str:
    """The MLflow run that trained the model with this file hash (the newest, if retrained)."""
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs: list = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`model.sha256` = '{model_sha256}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise RegistryError(
            f"no MLflow run in {tracking.tracking_uri()} trained the model with sha256 "
            f"{model_sha256[:16]}… (was tracking off when it was trained?): re-run "
            "`dvc repro train` (or the experiment) to record it, or pass --no-registry"
        )
    return runs[0].info.run_id


def register(client: MlflowClient, run_id: str, tags: dict[str, str]) -> str:
    """A new, not yet aliased version of the registered model; returns its number."""
    import mlflow

    version = mlflow.register_model(f"runs:/{run_id}/model", REGISTERED_MODEL, tags=tags)
    return str(version.version)


def alias_version(client: MlflowClient, alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException:
        return None


def registry_version(metadata: dict) -> str | None:
    return (metadata.get("registry") or {}).get("version")


# --- writing: stage, then switch ------------------------------------------------------------


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


def dvc_add(path: Path) -> None:
    """``dvc add`` the staged directory: fills the cache and writes its .dvc file beside it."""
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", str(path)], check=True)


def switch(stage: Path, with_dvc: bool, report: Path | None = None) -> None:
    """Make the staged ``models/`` (and ``models.dvc``, and the report) the champion's."""
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
    if with_dvc:
        os.replace(stage / MODELS_DVC.name, MODELS_DVC)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / report.name, report)


def bentoml_home() -> Path:
    home = Path(os.environ.setdefault("BENTOML_HOME", str(ROOT / "bentoml_home")))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return home


def without_nulls(value):
    """BentoML metadata accepts basic types only: drop the entries that are null."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def trace_labels(metadata: dict) -> dict[str, str]:
    """What ties a served model to its registry version, run, experiment, commit and data."""
    values = {
        "target": metadata.get("target"),
        "experiment": metadata.get("experiment"),
        "registry_version": registry_version(metadata),
        "mlflow_run_id": metadata.get("mlflow_run_id"),
        "git_sha": metadata.get("git_sha"),
        "dataset_sha256": (metadata.get("data_snapshot") or {}).get("dataset_sha256"),
    }
    return {key: str(value) for key, value in values.items() if value is not None}


def import_into_bentoml(metadata: dict) -> str:
    bentoml_home()
    import bentoml

    with bentoml.models.create(
        BENTO_MODEL_NAME, labels=trace_labels(metadata), metadata=without_nulls(metadata)
    ) as model:
        shutil.copyfile(PROMOTED_MODEL, Path(model.path) / MODEL_FILENAME)
        shutil.copyfile(PROMOTED_METADATA, Path(model.path) / METADATA_FILENAME)
    return str(model.tag)


def served_by_bentoml(metadata: dict) -> bool:
    """Whether the BentoML store's latest model is this one."""
    bentoml_home()
    import bentoml

    try:
        latest = bentoml.models.get(f"{BENTO_MODEL_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return latest.info.metadata.get("model_sha256") == metadata["model_sha256"]


def finish(metadata: dict, options: Options) -> list[str]:
    """The steps after the switch, each done only if missing: the BentoML import and the
    registry aliases. Re-running a promotion killed after its switch completes them."""
    done = []
    if options.with_bentoml and not served_by_bentoml(metadata):
        done.append(f"BentoML model {import_into_bentoml(metadata)}")
    version = registry_version(metadata)
    if options.with_registry and version:
        client = mlflow_client()
        current = alias_version(client, CHAMPION)
        if current is None or str(current.version) != version:
            previous = (metadata.get("promotion") or {}).get("previous_version")
            if previous:
                client.set_registered_model_alias(REGISTERED_MODEL, PREVIOUS, previous)
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
            if options.with_dvc:
                client.set_model_version_tag(
                    REGISTERED_MODEL, version, "models_dvc", MODELS_DVC.read_text()
                )
            done.append(f"registry alias {CHAMPION} -> version {version}")
    return done


def build_metadata(
    model: bytes, info: dict, rev: str, experiment: str | None, feature_schema: dict | None
) -> dict:
    model_sha = hashlib.sha256(model).hexdigest()
    dirty = experiment is None and bool(
        git_text(ROOT, "status", "--porcelain", "--untracked-files=no")
    )
    return {
        "version": model_sha[:12],
        "model_sha256": model_sha,
        "git_sha": rev,
        "git_dirty": dirty,
        "experiment": experiment or "workspace",
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


def report_path(metadata: dict, kind: str = "promote") -> Path:
    version = registry_version(metadata)
    ident = f"v{version}" if version else metadata["version"]
    return PROMOTIONS_DIR / f"{kind}-{ident}-{metadata['experiment']}.md"


def promotion_report(metadata: dict, decision: Decision, reason: str | None) -> str:
    promotion = metadata["promotion"]
    verdict = "passed the gate" if decision.passed else "**did not pass the gate: forced**"
    lines = [
        f"# Promotion: {metadata['experiment']} → champion",
        "",
        f"- Model `{metadata['model_name']}`, target `{metadata['target']}`, model sha256 "
        f"`{metadata['model_sha256'][:16]}…`, git commit `{metadata['git_sha'][:12]}`",
        f"- Registry: `{REGISTERED_MODEL}` version {registry_version(metadata) or '–'} "
        f"(previous champion: {promotion['previous_version'] or 'none'}); MLflow run "
        f"`{metadata.get('mlflow_run_id') or '–'}`",
        f"- Data snapshot: dataset sha256 `{metadata['data_snapshot']['dataset_sha256']}`",
        f"- Decision: {verdict}",
        *(f"  - {line}" for line in decision.reasons),
    ]
    if reason is not None:
        lines.append(f"- Forced, reason: {reason}")
    return "\n".join([*lines, "", "## Comparison", "", decision.report, ""])


def commit_hint(paths: list[Path], message: str) -> str:
    quoted = message.replace("'", "'\\''")
    return f"git add {' '.join(map(str, paths))} && git commit -m '{quoted}'"


@dataclass
class Options:
    force: bool = False
    reason: str | None = None
    with_dvc: bool = True
    with_bentoml: bool = True
    with_registry: bool = True
    soft_gate: bool = False  # a refused gate keeps the champion and is no error (make run)


def promote(experiment: str | None, options: Options | None = None) -> dict | None:
    """Promote the workspace model or an experiment's; None when the champion is kept."""
    options = options or Options()
    candidate = read_candidate(experiment)
    bundle = checked_bundle(candidate.model, candidate.info, experiment)  # before any write
    champion = current_champion()
    if champion is not None and champion.metadata.get("model_sha256") == candidate.sha256:
        completed = finish(champion.metadata, options)
        print(
            f"{candidate.name} is already the champion ({PROMOTED_DIR}/)"
            + (f"; completed: {', '.join(completed)}" if completed else ": nothing to do")
        )
        return None
    decision = gate(candidate, champion)
    print(decision.report)
    if not decision.passed:
        summary = "; ".join(decision.reasons)
        if not options.force:
            raise GateRefused(f"{candidate.name} is not promoted: {summary}")
        print(f"\nforced past the gate: {summary}\nreason: {options.reason}")
    metadata = build_metadata(
        candidate.model, candidate.info, candidate.rev, experiment, bundle.feature_schema
    )
    previous = registry_version(champion.metadata) if champion else None
    if options.with_registry:
        client = mlflow_client()
        run_id = find_run(client, candidate.sha256)
        tags = {k: v for k, v in trace_labels(metadata).items() if k != "registry_version"}
        version = register(client, run_id, {**tags, "mlflow_run_id": run_id})
        metadata["mlflow_run_id"] = run_id
        metadata["registry"] = {"name": REGISTERED_MODEL, "version": version}
    report = report_path(metadata)
    metadata["promotion"] = {
        "forced": not decision.passed,
        "reason": options.reason,
        "previous_version": previous,
        "report": str(report),
    }
    stage = stage_directory()
    try:
        staged = stage / PROMOTED_DIR.name
        staged.mkdir()
        (staged / MODEL_FILENAME).write_bytes(candidate.model)
        write_json(metadata, staged / METADATA_FILENAME)
        if candidate.predictions_file is not None:
            (staged / PROMOTED_PREDICTIONS.name).write_bytes(candidate.predictions_file)
        if options.with_dvc:
            dvc_add(staged)
        write_text(promotion_report(metadata, decision, options.reason), stage / report.name)
        kill_point("staged")
        switch(stage, options.with_dvc, report)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    kill_point("switched")
    completed = finish(metadata, options)
    print(
        f"promoted {metadata['experiment']} ({metadata['model_name']}, target "
        f"{metadata['target']}, registry version {registry_version(metadata) or '–'}) -> "
        f"{PROMOTED_DIR}/" + "".join(f"; {step}" for step in completed)
    )
    if options.with_dvc:
        message = f"Promote {metadata['experiment']} (registry v{registry_version(metadata)})"
        print(record_hint(candidate, report, message))
    return metadata


def record_hint(candidate: Candidate, report: Path, message: str) -> str:
    """What to commit, only once the workspace's params.yaml and dvc.lock describe the
    promoted run: an experiment's model promoted from another workspace is applied first."""
    paths = [PARAMS_FILE, Path("dvc.lock"), Path("metrics"), Path("plots"), MODELS_DVC, report]
    held = MODEL_FILE.is_file() and hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest()
    if held == candidate.sha256:
        return "record it:\n  " + commit_hint(paths, message)
    return (
        f"the workspace (params.yaml, dvc.lock, model/) holds another run than {candidate.name}: "
        f"bring the promoted run in, then record it:\n  dvc exp apply {candidate.name}\n  "
        + commit_hint(paths, message)
    )


# --- rollback ------------------------------------------------------------------------------


def rollback(with_bentoml: bool = True) -> dict:
    """Make the registry's ``previous`` version the champion again, from the DVC cache."""
    client = mlflow_client()
    previous = alias_version(client, PREVIOUS)
    current = alias_version(client, CHAMPION)
    if previous is None or current is None:
        raise RegistryError(f"the registry has no {PREVIOUS!r} champion to roll back to")
    models_dvc = (previous.tags or {}).get("models_dvc")
    if not models_dvc:
        raise RegistryError(f"registry version {previous.version} records no models.dvc")
    stage = stage_directory()
    try:
        write_text(models_dvc, stage / MODELS_DVC.name)
        subprocess.run(
            [sys.executable, "-m", "dvc", "checkout", "-q", str(stage / MODELS_DVC.name)],
            check=True,
        )
        metadata = json.loads((stage / PROMOTED_DIR.name / METADATA_FILENAME).read_text())
        kill_point("staged")
        switch(stage, with_dvc=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    report = report_path(metadata, "rollback")
    write_text(
        f"# Rollback: registry version {current.version} → {previous.version}\n\n"
        f"- Champion again: {metadata['experiment']} (version {previous.version}, MLflow run "
        f"`{metadata.get('mlflow_run_id')}`), restored byte for byte from the DVC cache.\n"
        f"- `previous` now names version {current.version}: `make rollback` again undoes this.\n",
        report,
    )
    tag = import_into_bentoml(metadata) if with_bentoml else None
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, previous.version)
    client.set_registered_model_alias(REGISTERED_MODEL, PREVIOUS, current.version)
    print(
        f"rolled back to registry version {previous.version} ({metadata['experiment']})"
        + (f", BentoML model {tag}" if tag else "")
    )
    message = f"Roll back to {metadata['experiment']} (registry v{previous.version})"
    print("record it:\n  " + commit_hint([MODELS_DVC, report], message))
    return metadata


# --- command line ---------------------------------------------------------------------------


def run(experiment: str | None, options: Options, rollback_instead: bool = False) -> int:
    """``baac promote`` (``baac rollback`` with ``rollback_instead``): the exit status, 0,
    ``GATE_EXIT`` (the gate refused) or ``REFUSED_EXIT`` (nothing written)."""
    os.chdir(ROOT)
    from baac_severity.modeling.model_store import FeatureSchemaError, ModelVersionError

    try:
        if rollback_instead:
            rollback(with_bentoml=options.with_bentoml)
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
        compare.CompareError,
    ) as error:
        print(f"promote: refusing to promote: {error}", file=sys.stderr)
        return REFUSED_EXIT
    return 0
