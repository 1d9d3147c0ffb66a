"""Faults against the real service (``bentoml serve``): random paths, a worker killed under load.

Used by ``tests/test_service_faults.py`` (which asserts) and ``bench/faults.py`` (which reports
the figures of docs/serving.md#faults, before and after).
"""

from __future__ import annotations

import http.client
import itertools
import re
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil

from baac_severity.config import ROOT
from baac_severity.testing.local_service import Server

WORKER_MODULE = "_bentoml_impl.worker.service"  # the command line of a BentoML worker
EXAMPLE = (ROOT / "baac_severity" / "serving" / "predict_request.json").read_bytes()
SERIES = re.compile(r"^(\w+)(\{[^}]*\})?", re.MULTILINE)


def workers(server: Server) -> list[psutil.Process]:
    """The live worker processes of a ``bentoml serve`` (children that run the service)."""
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if WORKER_MODULE in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # exited (or a zombie) meanwhile: not a worker any more
            continue
    return found


def metrics(url: str, timeout: float = 60) -> str:
    return httpx.get(f"{url}/metrics", timeout=timeout).text


def labelled_series(text: str) -> set[str]:
    """The series of a Prometheus text page (name and labels, without values) that carry an
    ``endpoint`` label: those a request path could add."""
    found = set()
    for line in text.splitlines():
        if line and not line.startswith("#") and 'endpoint="' in line:
            match = SERIES.match(line)
            if match:
                found.add(match.group(0))
    return found


def endpoints(text: str) -> set[str]:
    return set(re.findall(r'endpoint="([^"]*)"', text))


def send_random_paths(url: str, count: int, key: str | None = None) -> Counter[int]:
    """GET ``count`` distinct random paths on one keep-alive connection; the statuses."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    headers = {} if key is None else {"X-API-Key": key}
    statuses: Counter[int] = Counter()
    try:
        for _ in range(count):
            connection.request("GET", f"/{secrets.token_urlsafe(12)}", headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
    finally:
        connection.close()
    return statuses


@dataclass
class KillOutcome:
    """What ``clients`` clients saw while one worker was killed."""

    answered_before: int = 0
    answered_after: int = 0
    errors: int = 0  # connection reset or closed: a request in flight on the killed worker
    timeouts: int = 0  # no answer within the client's timeout: nobody served the request
    statuses: Counter[int] = field(default_factory=Counter)  # answers other than 200
    longest_gap_s: float = 0.0  # the longest time without any answer, after the kill
    restarted_in_s: float | None = None  # until the worker count was back


def kill_a_worker_under_load(
    server: Server,
    key: str,
    clients: int = 8,
    before_s: float = 3.0,
    after_s: float = 15.0,
    timeout_s: float = 5.0,
) -> KillOutcome:
    """``clients`` keep-alive clients post the example request in a loop; after ``before_s``
    one worker gets SIGKILL; the clients go on for ``after_s``."""
    stop = threading.Event()
    lock = threading.Lock()
    answers: list[float] = []  # when each 200 arrived
    outcome = KillOutcome()
    killed_at = float("inf")

    def client() -> None:
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=timeout_s) as http:
            while not stop.is_set():
                try:
                    status = http.post("/predict", content=EXAMPLE).status_code
                except httpx.TimeoutException:
                    with lock:
                        outcome.timeouts += 1
                    continue
                except httpx.TransportError:
                    with lock:
                        outcome.errors += 1
                    continue
                now = time.monotonic()
                with lock:
                    if status == 200:
                        answers.append(now)
                    else:
                        outcome.statuses[status] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(before_s)
    before = workers(server)
    victim = before[0]
    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    deadline = killed_at + after_s
    while time.monotonic() < deadline:
        alive = [w for w in workers(server) if w.pid != victim.pid]
        if outcome.restarted_in_s is None and len(alive) >= len(before):
            outcome.restarted_in_s = time.monotonic() - killed_at
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=timeout_s + 5)
    outcome.answered_before = sum(1 for t in answers if t < killed_at)
    outcome.answered_after = len(answers) - outcome.answered_before
    marks = [killed_at, *sorted(t for t in answers if t >= killed_at), deadline]
    outcome.longest_gap_s = max(b - a for a, b in itertools.pairwise(marks))
    return outcome
