"""Benchmark of the prediction service: ``.venv/bin/python bench/serve.py``.

Starts the real service (``bentoml serve``, its own BentoML home with the promoted model) and,
for comparison, a minimal Starlette app under uvicorn that runs the same validation, feature
code and model (``baac_severity.serving.schemas``, ``baac_severity.serving.inference``). For each
it measures, over keep-alive HTTP on loopback:

- the latency (p50/p95/p99) of single-accident requests, one at a time;
- the latency of 1,000-accident requests, one at a time;
- the throughput of single-accident requests from 8 concurrent clients for 20 s.

It then prints the BentoML/baseline ratios against the goals, and an in-process breakdown of
where a request's time goes (validation, tables, entities, features, model). Requests are real
test-split accidents rebuilt from the chunk tables. Every loop is bounded by a count or a
deadline. ``--json PATH`` also writes the figures. ``--before DIR`` (a copy of an earlier
``models/``) also serves that model with the baseline app and compares the single-accident
latency of the two models, taking turns, in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from baac_severity.config import PROMOTED_METADATA, PROMOTED_MODEL, ROOT
from baac_severity.serving.examples import load_tables, request_records, sample_test_split
from baac_severity.testing.local_service import (
    environment,
    free_port,
    import_model,
    start,
    stop_process,
)

KEY = "bench-key"
GOALS = {
    "single_p50_ms": 10.0,
    "batch_p50_ms": 100.0,
    "throughput_ratio": 0.8,
    "single_over_readyz_p50": 4.0,
}


# --- the baseline: the same work in a minimal Starlette app -------------------------------


def baseline_app() -> Any:
    """Starlette app: API-key check, the service's validation, tables, features and model."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from baac_severity.serving import schemas
    from baac_severity.serving.inference import Predictor, settle_heap

    predictor = Predictor.from_directory(os.environ["BASELINE_MODEL_DIR"])
    predictor.warm_up()  # as the service does
    settle_heap()

    def answer(body: bytes) -> Response:
        request, problems = schemas.parse_request(schemas.PredictRequest, body)
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        _, _, probabilities = predictor.predict(request.accidents)
        best = predictor.decide(probabilities)
        predictions = [
            {
                "record": i,
                "predicted_class": predictor.classes[top],
                "label": predictor.labels[top],
                "probabilities": dict(zip(predictor.labels, row, strict=True)),
                "model_version": predictor.version,
            }
            for i, (top, row) in enumerate(zip(best, probabilities.tolist(), strict=True))
        ]
        return JSONResponse({"predictions": predictions})

    async def predict(request: Request) -> Response:
        if request.headers.get("x-api-key") != KEY:
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        body = await request.body()
        # Like BentoML's sync APIs: the CPU work runs in a worker thread.
        return await run_in_threadpool(answer, body)

    async def ready(_: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])


def serve_baseline(port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "bench.serve:baseline_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
    )


def start_baseline(model_dir: Path, workers: int, log_dir: Path) -> tuple[Any, str]:
    """The baseline in a subprocess (``--baseline-server``); returns it once it answers."""
    port = free_port()
    env = dict(os.environ, BASELINE_MODEL_DIR=str(model_dir))
    command = [sys.executable, __file__, "--baseline-server", str(port), "--workers", str(workers)]
    log = (log_dir / "baseline.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"baseline did not start: {(log_dir / 'baseline.log').read_text()}")


# --- the load -----------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection (http.client: the lightest client at hand)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = host, int(port)
        self.connection = http.client.HTTPConnection(*self.address, timeout=120)
        self.headers = {"Content-Type": "application/json", "X-API-Key": KEY}
        self.reconnects = 0

    def get(self, path: str) -> int:
        """The status of a GET on the same keep-alive connection (a probe: no key, no body)."""
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def post(self, body: bytes) -> int:
        """The response status; a connection the server closed while idle is reopened once
        (what any keep-alive client does), other failures raise."""
        for attempt in (1, 2):
            try:
                self.connection.request("POST", "/predict", body=body, headers=self.headers)
                response = self.connection.getresponse()
                response.read()
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt == 2:
                    raise
                self.connection.close()
                self.connection = http.client.HTTPConnection(*self.address, timeout=120)
                self.reconnects += 1
        raise AssertionError("unreachable")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}


READYZ = b""  # a body list holding only this: GET /readyz instead of POST /predict


def timed_requests(
    client: Client, bodies: list[bytes], start: int, count: int, status: int = 200
) -> list[float]:
    """Latencies of ``count`` requests; NaN for one not answered with ``status``."""
    timings = []
    for i in range(start, start + count):
        began = time.perf_counter()
        body = bodies[i % len(bodies)]
        try:
            ok = (client.get("/readyz") if body == READYZ else client.post(body)) == status
        except (OSError, http.client.HTTPException):
            ok = False
        timings.append(time.perf_counter() - began if ok else float("nan"))
    return timings


def latency(
    urls: dict[str, str], bodies: list[bytes], rounds: int, per_round: int, status: int = 200
) -> dict:
    """Sequential latency on one keep-alive connection per server (``status``: the expected
    answer). The servers take turns in short rounds, so that a change in the machine's
    background load hits both alike."""
    clients = {name: Client(url) for name, url in urls.items()}
    timings: dict[str, list[float]] = {name: [] for name in urls}
    for client in clients.values():
        timed_requests(client, bodies, 0, max(3, per_round // 2), status)  # warm-up
    for round_ in range(rounds):
        order = list(urls) if round_ % 2 == 0 else list(reversed(urls))
        for name in order:
            start = round_ * per_round
            timings[name] += timed_requests(clients[name], bodies, start, per_round, status)
    results = {}
    for name, values in timings.items():
        ok = [v for v in values if v == v]
        results[name] = {
            **percentiles(ok),
            "requests": len(values),
            "errors": len(values) - len(ok),
            "reconnects": clients[name].reconnects,
        }
    return results


def throughput(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[int, int]:
    """(successes, errors) of ``clients`` threads sending requests for ``seconds``."""
    counts, errors = [0] * clients, [0] * clients
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        client, i = Client(url), index
        while time.monotonic() < deadline:
            try:
                ok = client.post(bodies[i % len(bodies)]) == 200
            except (OSError, http.client.HTTPException):
                ok, client = False, Client(url)
            counts[index] += ok
            errors[index] += not ok
            i += clients

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 180)
    return sum(counts), sum(errors)


def throughputs(urls: dict[str, str], bodies: list[bytes], args: Any) -> dict[str, Any]:
    """Concurrent load in alternating windows, ``args.seconds`` in total per server."""
    windows = 4
    totals = {name: [0, 0] for name in urls}
    for window in range(windows):
        order = list(urls) if window % 2 == 0 else list(reversed(urls))
        for name in order:
            ok, failed = throughput(urls[name], bodies, args.clients, args.seconds / windows)
            totals[name][0] += ok
            totals[name][1] += failed
    return {
        name: {
            "requests_per_s": round(ok / args.seconds, 1),
            "requests": ok,
            "errors": failed,
            "clients": args.clients,
            "seconds": args.seconds,
        }
        for name, (ok, failed) in totals.items()
    }


def measure(urls: dict[str, str], singles: list[bytes], batches: list[bytes], args: Any) -> dict:
    # The probe first, then single accidents, in the same run: the ratio of their medians
    # is the model's cost above the HTTP floor (goal: at most 4x). An invalid accident (422)
    # takes the whole request path except the model: what no model speed-up can remove.
    rounds, per_round = 10, args.single_requests // 10
    probe = latency(urls, [READYZ], rounds, per_round)
    invalid = latency(urls, [invalid_body(singles[0])], rounds, per_round, status=422)
    single = latency(urls, singles, rounds, per_round)
    batch = latency(urls, batches, rounds=args.batch_requests // 3, per_round=3)
    load = throughputs(urls, singles, args)
    return {
        name: {
            "readyz": probe[name],
            "invalid_422": invalid[name],
            "single": single[name],
            "batch_1000": batch[name],
            "throughput": load[name],
        }
        for name in urls
    }


# --- where the time goes, in process -------------------------------------------------------


def median_ms(function: Callable[[], Any], repeat: int) -> float:
    """Median CPU ms of the process (all its threads) per call: on a shared host, wall time
    of a few-ms call mostly measures the scheduler's waits."""
    function()
    timings = []
    for _ in range(repeat):
        started = time.process_time()
        function()
        timings.append(time.process_time() - started)
    return round(statistics.median(timings) * 1000, 3)


def breakdown(model_dir: Path, body: bytes, repeat: int) -> dict[str, float]:
    """Median ms of each step of a request's path, on the path its size takes (plain NumPy
    columns up to ``SMALL_REQUEST`` accidents, pandas arrays above)."""
    from baac_severity import features
    from baac_severity.data import entities
    from baac_severity.serving import schemas
    from baac_severity.serving.inference import SMALL_REQUEST, Predictor, to_tables

    predictor = Predictor.from_directory(model_dir)
    request, _ = schemas.parse_request(schemas.PredictRequest, body)
    records = request.accidents
    plain = len(records) <= SMALL_REQUEST
    batch = to_tables(records, plain)
    accidents = entities.accident_columns(batch.tables)
    names = list(predictor.bundle.features)
    matrix = features.accident_matrix(accidents, names)
    frame = pd.DataFrame(matrix, columns=names)
    probabilities = predictor.predict_proba(matrix)
    everyone = np.ones(len(matrix), dtype=bool)
    return {
        "parse_request (JSON, repeated keys, validation)": median_ms(
            lambda: schemas.parse_request(schemas.PredictRequest, body), repeat
        ),
        "to_tables": median_ms(lambda: to_tables(records, plain), repeat),
        "entities.accident_columns": median_ms(
            lambda: entities.accident_columns(batch.tables), repeat
        ),
        "features.accident_matrix": median_ms(
            lambda: features.accident_matrix(accidents, names), repeat
        ),
        "whole path (Predictor.predict)": median_ms(lambda: predictor.predict(records), repeat),
        "predict_proba (tree by tree)": median_ms(lambda: predictor.predict_proba(matrix), repeat),
        "predict_proba (sklearn, n_jobs=1)": median_ms(
            lambda: predictor.bundle.predict_proba(frame), repeat
        ),
        'explanations, "explain": true (Predictor.explain)': median_ms(
            lambda: predictor.explain(matrix, probabilities, everyone), repeat
        ),
    }


CROSSOVER_SIZES = (1, 16, 64, 256, 1000, 5000)


def crossover(model_dir: Path, body: bytes, repeat: int) -> dict[str, dict[str, float]]:
    """Median CPU ms from validated records to the model matrix, on plain NumPy columns and on
    pandas arrays taking turns, per request size: where ``SMALL_REQUEST`` should sit."""
    from baac_severity.serving import schemas
    from baac_severity.serving.inference import Predictor, to_tables

    predictor = Predictor.from_directory(model_dir)
    request, _ = schemas.parse_request(schemas.PredictRequest, body)
    sizes: dict[str, dict[str, float]] = {}
    for size in CROSSOVER_SIZES:
        records = request.accidents[:size]
        timings: dict[str, list[float]] = {"plain": [], "pandas": []}
        for _ in range(max(5, repeat // size)):
            for kind, plain in (("plain", True), ("pandas", False)):
                started = time.process_time()
                predictor.matrix(to_tables(records, plain))
                timings[kind].append(time.process_time() - started)
        sizes[str(size)] = {k: round(statistics.median(v) * 1000, 3) for k, v in timings.items()}
    return sizes


# --- report -------------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("nan")


def report(results: dict[str, Any]) -> str:
    bento, base = results["bentoml"], results["baseline"]
    lines = [f"workers per server: {results['workers']}, cpus: {os.cpu_count()}", ""]
    lines.append(f"{'':28}{'BentoML':>12}{'baseline':>12}{'ratio':>8}")
    for part in ("readyz", "invalid_422", "single", "batch_1000"):
        for q in ("p50_ms", "p95_ms", "p99_ms"):
            b, s = bento[part][q], base[part][q]
            lines.append(f"{part + ' ' + q:28}{b:>12}{s:>12}{ratio(b, s):>8}")
    b, s = bento["throughput"]["requests_per_s"], base["throughput"]["requests_per_s"]
    clients = bento["throughput"]["clients"]
    lines.append(f"{f'throughput c={clients} (req/s)':28}{b:>12}{s:>12}{ratio(b, s):>8}")
    errors = {
        name: sum(r[p]["errors"] for p in r) for name, r in (("BentoML", bento), ("baseline", base))
    }
    lines.append(f"{'errors':28}{errors['BentoML']:>12}{errors['baseline']:>12}")
    over = {name: ratio(r["single"]["p50_ms"], r["readyz"]["p50_ms"]) for name, r in results.items()
            if name in ("bentoml", "baseline")}  # fmt: skip
    lines.append(f"{'single p50 / readyz p50':28}{over['bentoml']:>12}{over['baseline']:>12}")
    floor = {name: ratio(r["invalid_422"]["p50_ms"], r["readyz"]["p50_ms"])
             for name, r in results.items() if name in ("bentoml", "baseline")}  # fmt: skip
    lines.append(f"{'invalid p50 / readyz p50':28}{floor['bentoml']:>12}{floor['baseline']:>12}")
    goals = results["goals"]
    lines += ["", "goals (2 cores):"]
    lines += [f"  {name}: {'PASS' if ok else 'FAIL'}" for name, ok in goals.items()]
    lines += ["", "in process, median CPU ms per step (1 accident | 1,000 accidents):"]
    one, many = results["breakdown"]["1"], results["breakdown"]["1000"]
    lines += [f"  {step:36}{one[step]:>9}{many[step]:>10}" for step in one]
    lines += ["", "in process, records to model matrix, median CPU ms (plain | pandas columns):"]
    for size, kinds in results["crossover"].items():
        lines.append(f"  {size:>5} accidents{kinds['plain']:>10}{kinds['pandas']:>10}")
    if "before_after" in results:
        compared = results["before_after"]
        p50, in_process = compared["single_p50_ms"], compared["in_process_ms"]
        lines += [
            "",
            "models compared (baseline app, taking turns), single accident:",
            f"  p50 before {p50['before']} ms, after {p50['after']} ms "
            f"(delta {compared['single_p50_delta_ms']} ms)",
            f"  in process, whole path: before {in_process['before']} ms, "
            f"after {in_process['after']} ms",
        ]
    return "\n".join(lines)


def goals(bento: dict[str, Any], base: dict[str, Any]) -> dict[str, bool]:
    errors = sum(part["errors"] for part in bento.values())
    tput = ratio(bento["throughput"]["requests_per_s"], base["throughput"]["requests_per_s"])
    return {
        f"single p50 <= {GOALS['single_p50_ms']} ms": bento["single"]["p50_ms"]
        <= GOALS["single_p50_ms"],
        f"1,000-batch p50 <= {GOALS['batch_p50_ms']} ms": bento["batch_1000"]["p50_ms"]
        <= GOALS["batch_p50_ms"],
        f"throughput ratio >= {GOALS['throughput_ratio']}": tput >= GOALS["throughput_ratio"],
        f"single p50 <= {GOALS['single_over_readyz_p50']} x readyz p50": ratio(
            bento["single"]["p50_ms"], bento["readyz"]["p50_ms"]
        )
        <= GOALS["single_over_readyz_p50"],
        "0 errors": errors == 0,
    }


def invalid_body(body: bytes) -> bytes:
    """``body`` with its first accident's weather (``atm``) not a code: answered 422."""
    request = json.loads(body)
    request["accidents"][0]["atm"] = "not a code"
    return json.dumps(request).encode()


def bodies(count: int, size: int, seed: int) -> list[bytes]:
    tables = load_tables()
    keys = sample_test_split(count * size, seed=seed)
    records = request_records(tables, keys)
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    return [json.dumps({"accidents": chunk}).encode() for chunk in chunks]


def run(args: argparse.Namespace) -> dict[str, Any]:
    singles, batches = bodies(200, 1, seed=11), bodies(3, 1000, seed=12)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp_dir = Path(tmp)
        home = tmp_dir / "bentoml_home"
        import_model(ROOT, home)
        env = environment(
            home,
            API_KEY=KEY,
            BAAC_WORKERS=str(args.workers),
            PREDICTION_LOG_DIR=str(tmp_dir / "monitoring"),
        )
        print("starting the BentoML service and the Starlette baseline...", flush=True)
        server = start(env, tmp_dir / "bentoml")
        try:
            process, url = start_baseline(ROOT / "models", args.workers, tmp_dir)
            try:
                print("measuring (the two servers take turns)...", flush=True)
                results = measure({"bentoml": server.url, "baseline": url}, singles, batches, args)
            finally:
                stop_process(process)
        finally:
            server.stop()
    if args.before:
        results["before_after"] = before_after(args.before, singles, args)
    results["workers"] = args.workers
    results["goals"] = goals(results["bentoml"], results["baseline"])
    print("profiling the request path in process...", flush=True)
    results["breakdown"] = {
        "1": breakdown(ROOT / "models", singles[0], repeat=200),
        "1000": breakdown(ROOT / "models", batches[0], repeat=10),
    }
    results["crossover"] = crossover(ROOT / "models", bodies(1, 5000, seed=13)[0], repeat=600)
    return results


def before_after(before: Path, singles: list[bytes], args: argparse.Namespace) -> dict:
    """Single-accident latency of the promoted model and of the model in ``before``, each
    served by the baseline app, taking turns; and their in-process request paths."""
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        print(f"serving the model of {before} too, for the before/after latency...", flush=True)
        after_process, after_url = start_baseline(ROOT / "models", args.workers, Path(tmp))
        before_dir = Path(tmp) / "before"
        before_dir.mkdir()
        try:
            before_process, before_url = start_baseline(before, args.workers, before_dir)
            try:
                urls = {"after": after_url, "before": before_url}
                single = latency(urls, singles, rounds=10, per_round=args.single_requests // 10)
            finally:
                stop_process(before_process)
        finally:
            stop_process(after_process)
    whole = "whole path (Predictor.predict)"
    return {
        "single_p50_ms": {name: single[name]["p50_ms"] for name in urls},
        "single_p50_delta_ms": round(single["after"]["p50_ms"] - single["before"]["p50_ms"], 2),
        "in_process_ms": {
            "after": breakdown(ROOT / "models", singles[0], repeat=200)[whole],
            "before": breakdown(before, singles[0], repeat=200)[whole],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/serve.py", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="processes per server")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput duration")
    parser.add_argument("--single-requests", type=int, default=500)
    parser.add_argument("--batch-requests", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="an earlier model directory (model.joblib, metadata.json) to compare with",
    )
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        serve_baseline(args.baseline_server, args.workers)
        return 0
    for name in (PROMOTED_MODEL, PROMOTED_METADATA):
        if not (ROOT / name).is_file():
            raise SystemExit(f"{name} missing: run `make promote` first")
    results = run(args)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
