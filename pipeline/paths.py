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

PROGRESS_FILE = METRICS_DIR / "progress.json"
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
# Per-row validation and test probabilities (pipeline/compare.py): inside model/, the train
# stage's cached output, so that every experiment commit carries its own.
PREDICTIONS_FILE = MODEL_DIR / "predictions.parquet"
PROMOTIONS_DIR = REPORTS_DIR / "promotions"
PARAMS_FILE = Path("params.yaml")
