"""The ``baac`` command: every sub-command answers ``--help``, and exit statuses are those of
docs/cli.md (usage errors 2, "no" answers 1), through Typer's runner and the installed script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baac_severity.cli import app
from baac_severity.config import ROOT

COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)
runner = CliRunner()


def test_every_documented_command_is_registered() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text()
    expected = {"fetch", "progress", "features", "metrics", "promote", "rollback", "review"}
    expected |= {"retrain", "monitor", "replay", "examples", "sync-bentoml"}
    assert set(COMMANDS) == expected
    for name in COMMANDS:
        assert f"`baac {name}" in documented, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: baac {name}" in result.output


def test_usage_errors_exit_2_and_name_the_option() -> None:
    forced = runner.invoke(app, ["promote", "--force"])
    assert forced.exit_code == 2
    assert "--force needs --reason TEXT" in forced.stderr
    unknown = runner.invoke(app, ["replay", "--shift", "night,fog"])
    assert unknown.exit_code == 2 and "unknown shift fog" in unknown.stderr
    assert runner.invoke(app, ["monitor", "--no-such-option"]).exit_code == 2


def test_progress_before_any_ingestion(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no metrics/progress.json here
    nothing = runner.invoke(app, ["progress"])
    assert nothing.exit_code == 1 and "no ingestion yet" in nothing.stdout
    following = runner.invoke(app, ["progress", "--next"])
    assert following.exit_code == 0 and following.stdout.strip() == "1"


def test_the_installed_script_is_the_same_program() -> None:
    script = Path(sys.executable).with_name("baac")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        assert name in done.stdout
