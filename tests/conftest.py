"""Shared fixtures: the repository root and the shared BAAC data folder (CI has it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository is no installed package (uv: package = false): make `pipeline` importable.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_baac(repo_root: Path) -> Path:
    """The genuine BAAC files next to the repository; a plain clone does not have them."""
    folder = repo_root.parent / "shared" / "data" / "baac"
    if not folder.is_dir():
        pytest.skip(f"shared BAAC data not available at {folder} (present in CI only)")
    return folder
