"""Where things are and how they are set: every path the project reads or writes (relative to
the repository root, defined once) and the stage parameters of ``params.yaml``, which DVC's Hydra
integration composes from ``conf/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # omegaconf is not in the service's dependencies (serve group)
    from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "baac-severity"  # the registry's and the BentoML store's name of the model

RAW_DIR = Path("data/raw")
CHUNKS_DIR = Path("data/chunks")
CLEAN_DIR = Path("data/clean")
PROCESSED_DIR = Path("data/processed")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
MODEL_DIR = Path("model")
PROMOTED_DIR = Path("models")
LOGS_DIR = Path("logs")
REPORTS_DIR = Path("reports")

PROGRESS_FILE = METRICS_DIR / "progress.json"  # details: a plain output, not a DVC metric
DATA_SUMMARY = METRICS_DIR / "data.json"  # the data snapshot, a DVC metric
CLEAN_ACCIDENTS = CLEAN_DIR / "accidents.parquet"
CLEAN_USERS = CLEAN_DIR / "users.parquet"
CLEAN_STATE = CLEAN_DIR / "state.json"
DATASET = PROCESSED_DIR / "dataset.parquet"
DATASET_USERS = PROCESSED_DIR / "users.parquet"
SPLIT_REGISTRY = PROCESSED_DIR / "split_assignments.parquet"
SPLIT_PARAMS = PROCESSED_DIR / "split_params.json"
SPLIT_METRICS = METRICS_DIR / "split.json"
TRAIN_METRICS = METRICS_DIR / "train.json"  # ROC-AUC (validation, test), model size
SCORE_METRICS = METRICS_DIR / "scores.json"  # the other headline scores and calibration
# A saved model is a pair (baac_severity/modeling/model_store.py): the fitted scikit-learn
# estimator, joblib-pickled, and its JSON metadata beside it: model_info.json as trained,
# metadata.json (the same keys plus the promotion record) once promoted.
MODEL_FILENAME = "model.joblib"
METADATA_FILENAME = "metadata.json"
MODEL_FILE = MODEL_DIR / MODEL_FILENAME
MODEL_INFO = MODEL_DIR / "model_info.json"
MODEL_CARD = MODEL_DIR / "model_card.md"
EVALUATION = MODEL_DIR / "evaluation.json"  # every metric, per class and per year
# Per-row validation and test probabilities (baac_severity/decisions/compare.py): inside model/,
# the train stage's cached output, so that every experiment commit carries its own.
PREDICTIONS_FILE = MODEL_DIR / "predictions.parquet"
PROMOTED_MODEL = PROMOTED_DIR / MODEL_FILENAME
PROMOTED_METADATA = PROMOTED_DIR / METADATA_FILENAME
PROMOTED_PREDICTIONS = PROMOTED_DIR / PREDICTIONS_FILE.name
PROMOTIONS_DIR = REPORTS_DIR / "promotions"
MODELS_DVC = Path(f"{PROMOTED_DIR}.dvc")
REGISTRY_FILE = Path("registry.json")  # the registry of promoted models, in git
PARAMS_FILE = Path("params.yaml")
# The promotion policy: not an experiment parameter (conf/config.yaml says why).
PROMOTION_POLICY = Path("conf/promotion.yaml")
# Monitoring (docs/monitoring.md): out-of-time evaluation, drift per chunk, live drift.
MONITOR_DIR = PROCESSED_DIR / "monitor"
BACKTEST_CACHE = MONITOR_DIR / "backtest_cache"
OUT_OF_TIME_METRICS = METRICS_DIR / "out_of_time.json"
OUT_OF_TIME_PLOT = PLOTS_DIR / "out_of_time.csv"
DRIFT_METRICS = METRICS_DIR / "drift.json"
DRIFT_PLOT = PLOTS_DIR / "drift_share.csv"
DRIFT_FEATURES = PLOTS_DIR / "drift_features.csv"  # per chunk and feature: not a chart
DRIFT_REPORTS = REPORTS_DIR / "drift"
LIVE_DRIFT = REPORTS_DIR / "live" / "drift.json"
LIVE_DRIFT_REPORT = REPORTS_DIR / "live" / "drift.html"


def drift_report(chunk: int, folder: Path = DRIFT_REPORTS) -> Path:
    """The drift stage's HTML report of an arrival chunk."""
    return folder / f"chunk-{chunk:04d}.html"


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    from omegaconf import DictConfig, OmegaConf

    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path} not found: run stages from the repository root (dvc repro)")
    params = OmegaConf.load(path)
    if not isinstance(params, DictConfig):
        raise SystemExit(f"{path}: expected a mapping of parameter groups, found a list")
    return params


def chunk_limit(chunks: Any) -> int | None:
    """``ingest.chunks``: a positive count, or ``all``/``null`` for a full load."""
    if chunks is None or (isinstance(chunks, str) and chunks.lower() in {"all", "null", "none"}):
        return None
    try:
        value = int(chunks)
    except (TypeError, ValueError):
        raise SystemExit(
            f"ingest.chunks must be a positive integer or 'all', not {chunks!r}"
        ) from None
    if value < 1:
        raise SystemExit(f"ingest.chunks must be at least 1, not {value}")
    return value


def compose(overrides: list[str] | None = None, conf_dir: str | Path = "conf") -> dict:
    """Compose ``conf/`` with Hydra the way ``dvc exp run -S`` does, as a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        config = hydra_compose(config_name="config", overrides=overrides or [])
    composed = OmegaConf.to_container(config, resolve=True)
    assert isinstance(composed, dict)  # the config tree of conf/config.yaml is a mapping
    return composed
