"""Read the stage parameters from ``params.yaml`` (composed from ``conf/`` by DVC's Hydra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.paths import PARAMS_FILE


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path} not found: run stages from the repository root (dvc repro)")
    return OmegaConf.load(path)


def chunk_limit(chunks: Any) -> int | None:
    """``ingest.chunks``: a positive count, or ``all``/``null`` for a full load."""
    if chunks is None or (isinstance(chunks, str) and chunks.lower() in {"all", "null", "none"}):
        return None
    try:
        value = int(chunks)
    except (TypeError, ValueError):
        raise SystemExit(f"ingest.chunks must be a positive integer or 'all', not {chunks!r}")
    if value < 1:
        raise SystemExit(f"ingest.chunks must be at least 1, not {value}")
    return value
