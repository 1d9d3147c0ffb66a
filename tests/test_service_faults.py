"""Faults through the real service (``bentoml serve``, real HTTP, real signals): one rule for
keys with whitespace, a ``/metrics`` that random paths cannot grow, no worker outliving its
server, and a worker's death costing only the requests it had in flight.

The long checks (10,000 random paths with memory; a worker killed under load) are
``@pytest.mark.reliability`` (``make reliability``); lighter versions run in ``make test``.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from baac_severity.config import ROOT
from baac_severity.serving import auth, route_metrics
from baac_severity.serving.route_metrics import UNMATCHED
from baac_severity.testing.faults import (
    WORKER_MODULE,
    endpoints,
    kill_a_worker_under_load,
    labelled_series,
    metrics,
    send_random_paths,
    workers,
)
from baac_severity.testing.local_service import (
    environment,
    free_port,
    service_rss,
    start_service,
    stop_process,
)

pytestmark = pytest.mark.slow
KNOWN = {"/predict", "/model", "/data/progress", *auth.OPEN_PATHS}
MIB = 2**20


# --- one rule for keys --------------------------------------------------------------------


def status_with(server, headers: dict[str, str]) -> int:
    """GET /model with raw header values (httpx refuses to send surrounding whitespace)."""
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", "/model", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize("space", [" ", "\t", "  \t "])
def test_both_key_headers_ignore_surrounding_whitespace(server, keys, space):
    """RFC 9110 section 5.5: a field value's surrounding spaces and tabs are not part of it,
    in X-API-Key as in Authorization."""
    key = keys[0]
    for value in (f"{key}{space}", f"{space}{key}", f"{space}{key}{space}"):
        assert status_with(server, {"X-API-Key": value}) == 200, repr(value)
        assert status_with(server, {"Authorization": f"Bearer {value}"}) == 200, repr(value)
    for inside in (f"{key[:5]}{space}{key[5:]}", f"{key}{space}x"):  # whitespace within: wrong
        assert status_with(server, {"X-API-Key": inside}) == 401
        assert status_with(server, {"Authorization": f"Bearer {inside}"}) == 401
    assert status_with(server, {"X-API-Key": space}) == 401  # blank: no key


def test_offered_keys_trim_both_headers_alike():
    def offered(name: bytes, value: bytes) -> list[bytes]:
        return auth.offered_keys({"headers": [(name, value)]})

    for value in (b"k", b" k", b"k ", b"\tk\t"):
        assert offered(b"x-api-key", value) == offered(b"authorization", b"Bearer " + value)
        assert offered(b"x-api-key", value) == [b"k"]
    assert offered(b"x-api-key", b" \t ") == offered(b"authorization", b"Bearer \t") == []


# --- bounded /metrics ---------------------------------------------------------------------


def test_endpoint_label_is_the_route_or_one_value():
    routes, prefixes = frozenset({"/predict", "/metrics"}), ("/assets/",)
    assert route_metrics.endpoint_label("/predict", routes, prefixes) == "/predict"
    assert route_metrics.endpoint_label("/assets/a.js", routes, prefixes) == "/assets/*"
    assert route_metrics.endpoint_label("/predict/x", routes, prefixes) == UNMATCHED
    assert route_metrics.endpoint_label("/anything", routes, prefixes) == UNMATCHED


def test_random_paths_do_not_grow_metrics(server, keys):
    """Unknown paths, with and without a key, all count under one label: once that label has
    its series, more random paths add none (the make-test version of the 10,000-path check)."""
    assert send_random_paths(server.url, 100) == {401: 100}
    assert send_random_paths(server.url, 100, key=keys[0]) == {404: 100}
    first = metrics(server.url)
    assert send_random_paths(server.url, 300) == {401: 300}
    assert send_random_paths(server.url, 100, key=keys[0]) == {404: 100}
    then = metrics(server.url)
    assert labelled_series(then) == labelled_series(first)
    assert endpoints(then) <= KNOWN | {UNMATCHED}, endpoints(then) - KNOWN
    assert f'endpoint="{UNMATCHED}"' in then and 'http_response_code="401"' in then
    # The real paths still route: the probes, and the key is still checked on known routes.
    assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/model", timeout=30).status_code == 401


@pytest.fixture(scope="module")
def own_server(home, workspace, keys, tmp_path_factory):
    """A server of this module's own (default settings: two workers), for the long checks."""
    server = start_service(home, workspace, tmp_path_factory.mktemp("faults"), API_KEY=keys[0])
    yield server
    server.stop()


@pytest.mark.reliability
def test_10000_random_paths_keep_metrics_and_memory_bounded(own_server):
    send_random_paths(own_server.url, 1000)  # warm-up: the label exists, the heap has settled
    before_text, before_rss = metrics(own_server.url), service_rss(own_server)
    statuses = send_random_paths(own_server.url, 10_000)
    after_text, after_rss = metrics(own_server.url), service_rss(own_server)
    print(
        f"/metrics {len(before_text.encode()) / 1024:.1f} KiB -> "
        f"{len(after_text.encode()) / 1024:.1f} KiB after 10,000 random paths; "
        f"{len(labelled_series(after_text))} endpoint series; "
        f"RSS {before_rss / MIB:.0f} -> {after_rss / MIB:.0f} MiB ({after_rss / before_rss:.3f} x)"
    )
    assert statuses == {401: 10_000}
    assert labelled_series(after_text) == labelled_series(before_text)
    assert endpoints(after_text) <= KNOWN | {UNMATCHED}
    assert len(after_text) < 1.05 * len(before_text)  # values grow a digit, series do not
    assert after_rss < 1.05 * before_rss


# --- no orphans ---------------------------------------------------------------------------


def make_serve(port: int, home: Path, key: str, log: Path) -> subprocess.Popen:
    """``make serve`` on ``port``, in a session of its own (so that its group can be killed),
    serving the model of ``home`` (a fresh clone has no champion of its own to sync)."""
    env = environment(home, API_KEY=key, BAAC_MODEL_TAG="baac-severity:latest")
    with log.open("ab") as out:
        return subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready after {timeout} s:\n{log.read_text(errors='replace')}")


def serve_workers(make: subprocess.Popen) -> tuple[psutil.Process, list[psutil.Process]]:
    """The ``bentoml serve`` process under ``make serve`` and its workers."""
    tree = psutil.Process(make.pid).children(recursive=True)
    found = [p for p in tree if WORKER_MODULE in " ".join(p.cmdline())]
    assert found, [p.cmdline() for p in tree]
    (serve,) = {worker.parent() for worker in found}
    return serve, found


def running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs. A dead orphan stays a zombie until the init process
    reaps it, which in a container may take seconds: that is not the worker's exit."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def seconds_until_gone(processes: list[psutil.Process], limit: float = 10) -> float:
    start = time.monotonic()
    alive = processes
    while alive and time.monotonic() - start < limit:
        time.sleep(0.02)
        alive = [process for process in alive if running(process)]
    for process in alive:  # do not leave them behind, whatever the test says
        process.kill()
    assert not alive, f"workers still alive {limit} s after their server: {alive}"
    return time.monotonic() - start


def test_workers_exit_when_make_serve_or_the_serve_process_is_killed(home, keys, tmp_path):
    """SIGKILL of `make serve`'s process group: the workers (each in a session of its own)
    exit within 2 s and the next `make serve` starts on the same port; SIGKILL of the serve
    process alone: the same."""
    port, log = free_port(), tmp_path / "make-serve.log"
    url = f"http://127.0.0.1:{port}"
    first = make_serve(port, home, keys[0], log)
    try:
        wait_ready(url, first, log)
        _, orphans = serve_workers(first)
        assert all(os.getsid(w.pid) != os.getsid(first.pid) for w in orphans)  # own sessions
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        after_group_kill = seconds_until_gone(orphans)
        print(f"workers gone {after_group_kill:.2f} s after the group's SIGKILL")
        assert after_group_kill < 2
    finally:
        stop_process(first)
    second = make_serve(port, home, keys[0], log)
    try:
        wait_ready(url, second, log)  # the port was free
        serve, orphans = serve_workers(second)
        serve.send_signal(signal.SIGKILL)
        after_serve_kill = seconds_until_gone(orphans)
        print(f"workers gone {after_serve_kill:.2f} s after the serve process's SIGKILL")
        assert after_serve_kill < 2
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=10)


# --- no outage on a worker's death ------------------------------------------------------------


@pytest.mark.reliability
def test_a_killed_worker_costs_only_its_requests_in_flight(own_server, keys):
    """Two workers by default: SIGKILL of one under 8 clients loses at most the requests it
    had in flight (one per client at most); none waits for an answer (0 timeouts)."""
    assert len(workers(own_server)) == 2
    outcome = kill_a_worker_under_load(own_server, keys[0], clients=8)
    print(outcome)
    assert outcome.timeouts == 0
    assert outcome.errors <= 8
    assert not outcome.statuses  # every answer was a 200
    assert outcome.answered_after > 0 and outcome.longest_gap_s < 2.0
    assert outcome.restarted_in_s is not None  # BentoML started a new worker
