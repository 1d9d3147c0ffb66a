"""Shared fixtures: the repository root and the shared BAAC data folder (CI has it)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
