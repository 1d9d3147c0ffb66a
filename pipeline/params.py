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

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        config = hydra_compose(config_name="config", overrides=overrides or [])
    composed = OmegaConf.to_container(config, resolve=True)
    assert isinstance(composed, dict)  # the config tree of conf/config.yaml is a mapping
    return composed
