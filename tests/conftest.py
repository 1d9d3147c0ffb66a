"""Shared fixtures: the repository root, the shared BAAC data folder (CI has it), and the
prediction service (a real ``bentoml serve``) that several test modules call."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from baac_severity.config import ROOT
from baac_severity.testing.local_service import (
    has_outputs,
    import_model,
    small_workspace,
    start_service,
)
from tests.helpers import TEST_MAX_BODY


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_baac(repo_root: Path) -> Path:
    """The genuine BAAC files next to the repository; a plain clone does not have them."""
    folder = repo_root.parent / "shared" / "data" / "baac"
    if not folder.is_dir():
        pytest.skip(f"shared BAAC data not available at {folder} (present in CI only)")
    return folder


# --- the prediction service: started once per session, shared by the modules that call it ---


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """Where the promoted model and the pipeline outputs are: the repository, if it has them,
    else a small real workspace built here (a fresh clone)."""
    if has_outputs(ROOT):
        return ROOT
    if not (ROOT / "data" / "raw").is_dir():
        pytest.skip("no pipeline outputs and no data/raw: run `make data`")
    return small_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="session")
def home(workspace, tmp_path_factory) -> Path:
    """A BentoML home of its own holding the promoted model."""
    home = tmp_path_factory.mktemp("bentoml_home")
    import_model(workspace, home)
    return home


@pytest.fixture(scope="session")
def keys() -> tuple[str, str]:
    """Two valid keys: API_KEY holds several during a rotation."""
    return secrets.token_urlsafe(24), secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def server(home, workspace, keys, tmp_path_factory):
    """The service with a small body limit (TEST_MAX_BODY); started once, as it takes ~15 s.

    One worker (the default is two): the batching and concurrency-limit tests count what one
    worker saw; tests/test_service_faults.py checks the default."""
    logs = tmp_path_factory.mktemp("server")
    server = start_service(
        home,
        workspace,
        logs,
        API_KEY=f"{keys[0]}, {keys[1]}",
        MAX_BODY_BYTES=str(TEST_MAX_BODY),
        BAAC_WORKERS="1",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(server, keys):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": keys[0]}, timeout=120) as c:
        yield c
