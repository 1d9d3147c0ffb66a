"""The service's faults, measured: ``uv run --frozen python bench/faults.py``.

For 1 and for 2 workers (``BAAC_WORKERS``; 2 is the default), on the real service
(``bentoml serve``, the promoted model in a BentoML home of its own):

- memory: the resident memory of the serve process and of each worker, after a warm-up;
- a worker killed under load: 8 keep-alive clients post the example request, one worker gets
  SIGKILL, the clients go on for 15 s: answers, errors (requests in flight on the killed
  worker), timeouts (5 s without an answer), the longest time without any answer;
- 10,000 GETs of random paths without a key: the size of ``/metrics`` and its series with an
  ``endpoint`` label, before and after, and the memory growth.

``--code DIR`` serves the service of another checkout (e.g. an older commit, for a "before").
The figures are printed and written as JSON (``--json``, default ``bench/results/faults.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from baac_severity.config import ROOT
from baac_severity.testing.faults import (
    kill_a_worker_under_load,
    labelled_series,
    metrics,
    send_random_paths,
    workers,
)
from baac_severity.testing.local_service import (
    Server,
    environment,
    has_outputs,
    import_model,
    service_rss,
    start,
)
from bench.serve import KEY

MIB = 2**20


def memory(server: Server) -> dict[str, float]:
    import psutil

    serve = psutil.Process(server.process.pid).memory_info().rss / MIB
    per_worker = [w.memory_info().rss / MIB for w in workers(server)]
    return {"serve_mib": round(serve, 1), "workers_mib": [round(m, 1) for m in per_worker]}


def random_paths(server: Server, count: int) -> dict[str, Any]:
    send_random_paths(server.url, 200)  # warm-up: the process has served such requests
    before_text, before_rss = metrics(server.url), service_rss(server)
    started = time.perf_counter()
    statuses = send_random_paths(server.url, count)
    seconds = time.perf_counter() - started
    rendered = time.perf_counter()
    # Unbounded, the page took minutes to render: hence the long timeout.
    after_text, after_rss = metrics(server.url, timeout=900), service_rss(server)
    render_seconds = time.perf_counter() - rendered
    return {
        "paths": count,
        "statuses": dict(statuses),
        "seconds": round(seconds, 1),
        "metrics_kib_before": round(len(before_text.encode()) / 1024, 1),
        "metrics_kib_after": round(len(after_text.encode()) / 1024, 1),
        "metrics_seconds_after": round(render_seconds, 2),
        "endpoint_series_before": len(labelled_series(before_text)),
        "endpoint_series_after": len(labelled_series(after_text)),
        "rss_mib_before": round(before_rss / MIB),
        "rss_mib_after": round(after_rss / MIB),
        "rss_ratio": round(after_rss / before_rss, 3),
    }


def measure(home: Path, code: Path, log_dir: Path, worker_count: int, paths: int) -> dict:
    env = environment(home, API_KEY=KEY, BAAC_WORKERS=str(worker_count))
    server = start(env, log_dir, cwd=code)
    try:
        result: dict[str, Any] = {"workers": worker_count, "memory": memory(server)}
        outcome = kill_a_worker_under_load(server, KEY, clients=8)
        result["worker_kill"] = {**asdict(outcome), "statuses": dict(outcome.statuses)}
        time.sleep(20)  # let the killed worker's successor load its model
        result["random_paths"] = random_paths(server, paths)
        return result
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    args = parser.parse_args(argv)
    if not has_outputs(ROOT):
        print("no promoted model: run `make run` (or make promote) first", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        home = Path(tmp) / "bentoml_home"
        import_model(ROOT, home)
        for count in args.workers:
            print(f"{count} worker(s)...", flush=True)
            result = measure(home, args.code.resolve(), Path(tmp) / f"w{count}", count, args.paths)
            print(json.dumps(result, indent=1), flush=True)
            results.append(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
