"""The monitoring loop's make targets: ``make monitor`` passes ``SINCE`` and says which of the
CLI's exit codes made it fail; ``make replay`` finds the API key in ``.env`` like the service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from baac_severity.config import ROOT
from baac_severity.serving import replay


def make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_monitor_passes_since() -> None:
    dry = make("-n", "monitor", "SINCE=2026-12-01T08:00")
    assert dry.returncode == 0, dry.stderr
    assert "baac monitor --since '2026-12-01T08:00'" in dry.stdout


def test_make_monitor_fails_and_names_the_monitors_exit_code(tmp_path: Path) -> None:
    # An empty prediction log: the monitor has nothing to compare (its exit 2, documented).
    done = make("monitor", "SINCE=2026-12-01T08:00", PREDICTION_LOG_DIR=str(tmp_path))
    assert done.returncode != 0
    assert "make monitor: nothing to compare (monitor exit 2)" in done.stderr


def test_replay_reads_the_key_from_dot_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("API_KEY", raising=False)
    monkeypatch.delenv("BAAC_ENV_FILE", raising=False)
    assert replay.service_key() is None
    (tmp_path / ".env").write_text("API_KEY=from-dot-env, second-key\n")
    assert replay.service_key() == "from-dot-env"
    monkeypatch.setenv("API_KEY", "from-environment")  # the environment wins, as for the service
    assert replay.service_key() == "from-environment"
    (tmp_path / ".env").write_text("API_KEY=change-me-to-a-long-random-key\n")
    monkeypatch.delenv("API_KEY")
    with pytest.raises(SystemExit, match="API_KEY"):
        replay.service_key()
