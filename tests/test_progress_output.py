"""The stages' progress bars go to a terminal only: a log (``make run > log``, ``dvc repro`` in
CI) gets the stages' own lines and no carriage-return bar updates."""

from __future__ import annotations

import io
import sys

import pytest

from baac_severity.config import RAW_DIR, ROOT
from baac_severity.data import clean, ingest
from baac_severity.data.loaders import load_raw_dump

RAW = ROOT / RAW_DIR
pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason="data/raw missing: run `make data`")


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as an interactive shell's is."""

    def isatty(self) -> bool:
        return True


def run_stages(chunks: int) -> None:
    """ingest-chunk (real 2018 data, chunks of 2,000 accidents) then clean-scd2, in the cwd."""
    ingest.ingest(RAW_DIR, [2018], 2000, chunks)
    clean.clean()


def test_progress_bars_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / RAW_DIR).symlink_to(RAW)
    tables = load_raw_dump(RAW, [2018])  # both runs parse the same raw files: once is enough
    monkeypatch.setattr(ingest, "load_raw_dump", lambda *_: tables)

    run_stages(chunks=1)  # pytest's captured stderr, like a pipe or a file: not a terminal
    log = capsys.readouterr().err
    assert "\r" not in log
    assert "ingest-chunk: 1/" in log and "clean-scd2: chunk 1 applied" in log

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_stages(chunks=2)
    shown = terminal.getvalue()
    assert "\ringest-chunk:" in shown and "\rclean-scd2:" in shown
    assert "clean-scd2: chunk 2 applied" in shown
