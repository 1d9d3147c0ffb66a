"""Every path the pipeline reads or writes, relative to the repository root (defined once)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
TRAIN_METRICS = METRICS_DIR / "train.json"
MODEL_FILE = MODEL_DIR / "model.joblib"
MODEL_INFO = MODEL_DIR / "model_info.json"
MODEL_CARD = MODEL_DIR / "model_card.md"
EVALUATION = MODEL_DIR / "evaluation.json"  # every metric, per class and per year
# Per-row validation and test probabilities (pipeline/compare.py): inside model/, the train
# stage's cached output, so that every experiment commit carries its own.
PREDICTIONS_FILE = MODEL_DIR / "predictions.parquet"
PROMOTIONS_DIR = REPORTS_DIR / "promotions"
PARAMS_FILE = Path("params.yaml")
# Monitoring (docs/monitoring.md): out-of-time evaluation, drift per chunk, live drift.
MONITOR_DIR = PROCESSED_DIR / "monitor"
BACKTEST_CACHE = MONITOR_DIR / "backtest_cache"
OUT_OF_TIME_METRICS = METRICS_DIR / "out_of_time.json"
OUT_OF_TIME_PLOT = PLOTS_DIR / "out_of_time.csv"
DRIFT_METRICS = METRICS_DIR / "drift.json"
DRIFT_PLOT = PLOTS_DIR / "drift_share.csv"
DRIFT_REPORTS = REPORTS_DIR / "drift"
LIVE_DRIFT = REPORTS_DIR / "live" / "drift.json"
LIVE_DRIFT_REPORT = REPORTS_DIR / "live" / "drift.html"


def chunk_key(chunk: int) -> str:
    """The key of an arrival chunk in the monitoring metrics: ``out_of_time.chunk_0007``."""
    return f"chunk_{chunk:04d}"


def drift_report(chunk: int, folder: Path = DRIFT_REPORTS) -> Path:
    """The drift stage's HTML report of an arrival chunk."""
    return folder / f"chunk-{chunk:04d}.html"
