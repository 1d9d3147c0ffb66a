"""The prediction service's settings, in one typed place (pydantic-settings).

Read from the environment and from ``.env`` in the working directory (``BAAC_ENV_FILE`` names
another file); a variable set in the environment wins over the file. Every value is checked
when the service module is imported, so a bad value stops ``bentoml serve`` before anything
starts, with a message naming the variable and the problem (``load``). See ``.env.example``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from baac_severity.config import MODEL_NAME
from baac_severity.monitoring.prediction_log import DEFAULT_LOG_DIR

ENV_FILE_VARIABLE = "BAAC_ENV_FILE"
# The key .env.example ships with: copying the example must not give a working key.
PLACEHOLDER_KEY = "change-me-to-a-long-random-key"
Positive = Annotated[int, Field(gt=0)]


class SettingsError(ValueError):
    """A setting has a bad value: the message names the variable(s)."""


class ServiceSettings(BaseSettings):
    """Every setting of the service; the field name in upper case is the variable's name."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    api_key: SecretStr = Field(
        default=SecretStr(""),
        description="accepted keys, comma-separated (several during a rotation)",
    )
    allow_no_auth: bool = Field(default=False, description="serve without authentication")
    baac_model_tag: str = Field(default=f"{MODEL_NAME}:latest", min_length=1)
    # Two: when one worker dies, the other keeps answering while it restarts (docs/serving.md).
    baac_workers: Positive = Field(default=2, description="worker processes, each with a model")
    # BentoML store models kept by `baac sync-bentoml` (the champion and previous on top).
    baac_keep_models: Annotated[int, Field(ge=1)] = 5
    baac_progress_path: Path = Path("metrics/progress.json")
    max_body_bytes: Positive = 32 * 1024 * 1024  # a 10,000-accident request is about 11 MB
    prediction_log_dir: Path = DEFAULT_LOG_DIR  # baac_severity/serving/prediction_logger.py
    prediction_log_max_bytes: Positive = 10 * 1024 * 1024
    prediction_log_backups: Annotated[int, Field(ge=0)] = 5
    # Adaptive batching of POST /predict (docs/serving.md#adaptive-batching).
    baac_batching: bool = True
    baac_max_batch_size: Annotated[int, Field(ge=2)] = 64
    baac_max_latency_ms: Positive = 1000
    baac_max_concurrency: Positive = 64

    @field_validator("api_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr) -> SecretStr:
        # The message never repeats the configured value: it may hold real keys.
        if PLACEHOLDER_KEY in (key.strip() for key in value.get_secret_value().split(",")):
            raise ValueError(
                "holds the placeholder key of .env.example; generate a real one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    def keys(self) -> tuple[bytes, ...]:
        """The accepted keys: ``API_KEY`` split on commas, blanks ignored."""
        raw = self.api_key.get_secret_value()
        return tuple(key.strip().encode() for key in raw.split(",") if key.strip())


def describe(error: ValidationError) -> str:
    """One line per bad variable, without echoing secret values."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        variable = str(item["loc"][0]).upper() if item["loc"] else "settings"
        lines.append(f"{variable}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)


def load(env_file: str | Path | None = None) -> ServiceSettings:
    """The settings from the environment and ``env_file`` (default: ``$BAAC_ENV_FILE`` or
    ``.env``); raises ``SettingsError`` naming each bad variable."""
    if env_file is None:
        env_file = os.environ.get(ENV_FILE_VARIABLE, ".env")
    try:
        return ServiceSettings(_env_file=env_file)
    except ValidationError as error:
        raise SettingsError(describe(error)) from None
