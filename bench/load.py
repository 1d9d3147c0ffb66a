"""Load test of the prediction service: ``uv run --frozen python bench/load.py``.

``--compare``: adaptive batching against the same service without it (``BAAC_BATCHING=0``),
in one run: both services run side by side and take turns in short windows, first with one
client, then with ``--clients`` clients, each sending single accidents (see the end of this
text and docs/serving.md#adaptive-batching). Without it:

Starts the real service (``bentoml serve`` with its own BentoML home holding the promoted
model, as ``bench/serve.py`` does; a fresh clone runs the small real pipeline first), warms it
up with the same load, records its resident memory (the serve process and all its children),
then runs 16 concurrent keep-alive clients for 60 s. Each client sends a mix of single-accident
and 100-accident requests (one in ``--batch-every``) built from real test-split accidents. It
reports the requests, errors, p50/p95/p99 latency per kind, the throughput, and the memory
after the warm-up, at its peak and after the run.

Exit status 1 if any request failed, the service stopped answering, or its memory after the run
exceeds ``--rss-limit`` (1.10) times its memory after the warm-up: a leak under load.
The figures are also written as JSON (``--json``, default ``bench/results/load.json``).

With ``--compare``, the goals (2 cores): with ``--clients`` clients, the batched service's p99
<= 60 ms, its throughput >= 3 x the unbatched one's and >= 3 x its own with one client; with one
client, its p50 at most 1 ms above the unbatched one's. Exit status 1 if a goal is missed or a
request failed. The figures go to ``bench/results/batching.json`` by default.

The clients are threads of this process, apart from the service's processes. Not Locust: the
goals are ratios between two services and two client counts taken in alternating windows of one
run, plus the service's RSS, which a single-target Locust run does not give.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from baac_severity.config import CHUNKS_DIR, DATASET, ROOT
from baac_severity.serving.examples import (
    load_tables,
    request_records,
    sample_test_split,
)
from baac_severity.serving.settings import ServiceSettings
from baac_severity.testing.local_service import (
    has_outputs,
    import_model,
    service_rss,
    small_workspace,
    start_service,
)
from bench.serve import KEY, Client, percentiles

MIB = 2**20
KINDS = ("single", "batch")


@dataclass
class Tally:
    """What one client saw: latencies of the successful requests per kind, failures."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    reconnects: int = 0


def send(client: Client, body: bytes) -> float | None:
    """Seconds for one request, or None if it failed (a non-200 answer or a broken
    connection, which ``Client`` reopens once before giving up)."""
    started = time.perf_counter()
    try:
        ok = client.post(body) == 200
    except (OSError, http.client.HTTPException):
        ok = False
    return time.perf_counter() - started if ok else None


def client_loop(
    url: str, corpus: dict[str, list[bytes]], index: int, every: int, deadline: float
) -> Tally:
    """Requests until ``deadline``: a batch every ``every`` requests, singles otherwise. The
    clients start at different offsets so that batches do not arrive in step."""
    tally, client, n = Tally(), Client(url), index
    while time.monotonic() < deadline:
        kind = "batch" if every > 0 and n % every == 0 else "single"
        bodies_of_kind = corpus[kind]
        step = n // every if every > 0 else n  # every <= 0: single accidents only
        seconds = send(client, bodies_of_kind[(step + index) % len(bodies_of_kind)])
        if seconds is None:
            tally.errors[kind] += 1
            client = Client(url)  # a fresh connection after a failure
        else:
            tally.seconds[kind].append(seconds)
        n += 1
    tally.reconnects = client.reconnects
    return tally


def run_clients(
    url: str, corpus: dict[str, list[bytes]], clients: int, every: int, seconds: float
) -> tuple[list[Tally], float]:
    """``clients`` threads for ``seconds``; their tallies and the elapsed wall time."""
    tallies: list[Tally | None] = [None] * clients
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        tallies[index] = client_loop(url, corpus, index, every, deadline)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 300)  # bounded: a hung request cannot hang the run
    elapsed = time.monotonic() - started
    return [
        t if t is not None else Tally(errors={"single": 1, "batch": 0}) for t in tallies
    ], elapsed


def summarise(tallies: list[Tally], elapsed: float, batch_size: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in KINDS:
        seconds = [s for t in tallies for s in t.seconds[kind]]
        errors = sum(t.errors[kind] for t in tallies)
        results[kind] = {
            "requests": len(seconds) + errors,
            "errors": errors,
            **(percentiles(seconds) if seconds else {}),
        }
    ok_single = results["single"]["requests"] - results["single"]["errors"]
    ok_batch = results["batch"]["requests"] - results["batch"]["errors"]
    results["total"] = {
        "requests": results["single"]["requests"] + results["batch"]["requests"],
        "errors": results["single"]["errors"] + results["batch"]["errors"],
        "seconds": round(elapsed, 1),
        "requests_per_s": round((ok_single + ok_batch) / elapsed, 1),
        "accidents_per_s": round((ok_single + ok_batch * batch_size) / elapsed, 1),
        "reconnects": sum(t.reconnects for t in tallies),
    }
    return results


def watch_rss(server: Any, stop: threading.Event, peak: list[int]) -> None:
    """Samples the service's RSS twice a second into ``peak[0]`` until ``stop``."""
    while not stop.wait(0.5):
        try:
            peak[0] = max(peak[0], service_rss(server))
        except Exception:  # the service exiting is reported by the readiness check
            return


def build_corpus(workspace: Path, batch_size: int) -> dict[str, list[bytes]]:
    """Request bodies of real test-split accidents: 10 batches of ``batch_size``, and each of
    their accidents alone (rebuilding accidents from the chunk tables is the slow part)."""
    keys = sample_test_split(10 * batch_size, seed=31, dataset=workspace / DATASET)
    records = request_records(load_tables(workspace / CHUNKS_DIR), keys)
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    return {
        "single": [json.dumps({"accidents": [record]}).encode() for record in records],
        "batch": [json.dumps({"accidents": batch}).encode() for batch in batches],
    }


def promoted_model(tmp_dir: Path) -> tuple[Path, Path]:
    """(workspace, BentoML home holding its promoted model): this repository's, or a small real
    one built here on a fresh clone."""
    workspace = ROOT
    if not has_outputs(ROOT):
        print("no promoted model here: running the small real pipeline first...", flush=True)
        workspace = small_workspace(tmp_dir / "workspace")
    home = tmp_dir / "bentoml_home"
    import_model(workspace, home)
    return workspace, home


def load(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, ThreadPoolExecutor(1) as pool:
        tmp_dir = Path(tmp)
        workspace, home = promoted_model(tmp_dir)
        print("starting the service; building requests from real accidents...", flush=True)
        # Both take ~15 s on 2 cores: the service starts in its own process meanwhile.
        corpus_future = pool.submit(build_corpus, workspace, args.batch_size)
        server = start_service(
            home, workspace, tmp_dir / "server", API_KEY=KEY, BAAC_WORKERS=str(args.workers)
        )
        try:
            corpus = corpus_future.result()
            print(f"warming up: {args.clients} clients for {args.warmup:.0f} s...", flush=True)
            run_clients(server.url, corpus, args.clients, args.batch_every, args.warmup)
            time.sleep(1)  # let the last answers and the prediction log settle
            rss_warm = service_rss(server)
            print(f"RSS after warm-up: {rss_warm / MIB:.0f} MiB", flush=True)
            print(f"load: {args.clients} clients for {args.seconds:.0f} s...", flush=True)
            stop, peak = threading.Event(), [rss_warm]
            watcher = threading.Thread(target=watch_rss, args=(server, stop, peak), daemon=True)
            watcher.start()
            tallies, elapsed = run_clients(
                server.url, corpus, args.clients, args.batch_every, args.seconds
            )
            stop.set()
            watcher.join(timeout=5)
            time.sleep(1)
            rss_after = service_rss(server)
            ready = httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        finally:
            server.stop()
    results = summarise(tallies, elapsed, args.batch_size)
    results["rss"] = {
        "after_warmup_mib": round(rss_warm / MIB, 1),
        "peak_mib": round(peak[0] / MIB, 1),
        "after_run_mib": round(rss_after / MIB, 1),
        "ratio_after_to_warmup": round(rss_after / rss_warm, 3),
        "limit": args.rss_limit,
    }
    results["ready_after_run"] = ready
    results["config"] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "batch_size": args.batch_size,
        "batch_every": args.batch_every,
        "workers": args.workers,
        "cpus": os.cpu_count(),
    }
    results["passed"] = (
        ready
        and results["total"]["errors"] == 0
        and results["rss"]["ratio_after_to_warmup"] <= args.rss_limit
    )
    return results


COMPARE_GOALS = {
    "p99_ms": 60.0,
    "throughput_ratio": 3.0,
    "single_client_p50_extra_ms": 1.0,
    "scaling": 3.0,  # the batched service: throughput with --clients clients over one client's
}


def phases(clients: int) -> list[tuple[str, int, bool]]:
    """(name, clients, warm up first): one client, many, then one client again at once, which
    shows how long BentoML's batcher keeps the waits it learned under load."""
    return [
        ("clients_1", 1, True),
        (f"clients_{clients}", clients, True),
        ("clients_1_after_burst", 1, False),
    ]


def take_turns(
    urls: dict[str, str], corpus: dict[str, list[bytes]], clients: int, seconds: float
) -> dict[str, Any]:
    """Single accidents from ``clients`` clients to each service, in alternating windows
    (so that a change in the host's background load hits both alike)."""
    windows = 4
    tallies: dict[str, list[Tally]] = {name: [] for name in urls}
    elapsed = dict.fromkeys(urls, 0.0)
    for window in range(windows):
        order = list(urls) if window % 2 == 0 else list(reversed(urls))
        for name in order:
            found, took = run_clients(urls[name], corpus, clients, 0, seconds / windows)
            tallies[name] += found
            elapsed[name] += took
    return {
        name: summarise(tallies[name], elapsed[name], batch_size=1) | {"clients": clients}
        for name in urls
    }


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """The batched and the unbatched service, side by side, with 1 and ``args.clients``
    clients."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp,
        ThreadPoolExecutor(1) as pool,
    ):
        tmp_dir = Path(tmp)
        workspace, home = promoted_model(tmp_dir)
        print("starting both services; building requests from real accidents...", flush=True)
        corpus_future = pool.submit(build_corpus, workspace, args.batch_size)
        settings = {"API_KEY": KEY, "BAAC_WORKERS": str(args.workers)}
        servers = {
            "batched": start_service(home, workspace, tmp_dir / "batched", **settings),
            "unbatched": start_service(
                home, workspace, tmp_dir / "unbatched", BAAC_BATCHING="0", **settings
            ),
        }
        try:
            corpus = corpus_future.result()
            urls = {name: server.url for name, server in servers.items()}
            results: dict[str, Any] = {}
            for phase, clients, warm in phases(args.clients):
                if warm:  # at the phase's own load: BentoML's batcher adapts to it
                    for url in urls.values():
                        run_clients(url, corpus, clients, 0, args.warmup)
                print(f"{phase}: {args.seconds:.0f} s per service...", flush=True)
                results[phase] = take_turns(urls, corpus, clients, args.seconds)
        finally:
            for server in servers.values():
                server.stop()
    many, one = results[f"clients_{args.clients}"], results["clients_1"]
    burst = results["clients_1_after_burst"]
    ratio = (
        many["batched"]["total"]["requests_per_s"] / many["unbatched"]["total"]["requests_per_s"]
    )
    extra = one["batched"]["single"]["p50_ms"] - one["unbatched"]["single"]["p50_ms"]
    scaling = many["batched"]["total"]["requests_per_s"] / one["batched"]["total"]["requests_per_s"]
    errors = sum(r[name]["total"]["errors"] for r in results.values() for name in r)
    results["goals"] = {
        f"{args.clients} clients: batched p99 <= {COMPARE_GOALS['p99_ms']} ms": many["batched"][
            "single"
        ]["p99_ms"]
        <= COMPARE_GOALS["p99_ms"],
        f"{args.clients} clients: throughput >= {COMPARE_GOALS['throughput_ratio']} x unbatched": (
            ratio >= COMPARE_GOALS["throughput_ratio"]
        ),
        f"1 client: p50 at most {COMPARE_GOALS['single_client_p50_extra_ms']} ms above unbatched": (
            extra <= COMPARE_GOALS["single_client_p50_extra_ms"]
        ),
        f"{args.clients} clients: batched throughput >= {COMPARE_GOALS['scaling']} x 1 client": (
            scaling >= COMPARE_GOALS["scaling"]
        ),
        "0 errors": errors == 0,
    }
    results["throughput_ratio"] = round(ratio, 2)
    results["scaling"] = round(scaling, 2)
    results["single_client_p50_extra_ms"] = round(extra, 2)
    results["after_burst_p50_extra_ms"] = round(
        burst["batched"]["single"]["p50_ms"] - burst["unbatched"]["single"]["p50_ms"], 2
    )
    results["config"] = {
        "clients": args.clients,
        "seconds_per_service": args.seconds,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    results["passed"] = all(results["goals"].values())
    return results


def compare_report(results: dict[str, Any]) -> str:
    config = results["config"]
    lines = [
        f"single accidents, {config['seconds_per_service']} s per service and client count, "
        f"{config['workers']} worker(s), {config['cpus']} cpus, load average after "
        f"{config['load_average_after']}",
        "",
        f"{'clients':>8} {'service':10}{'requests':>10}{'errors':>8}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}",
    ]
    for key, by_service in results.items():
        if not key.startswith("clients_"):
            continue
        for name, r in by_service.items():
            single = r["single"]
            clients = str(r["clients"]) + ("*" if key.endswith("after_burst") else "")
            lines.append(
                f"{clients:>8} {name:10}{single['requests']:>10}{single['errors']:>8}"
                f"{single.get('p50_ms', '-'):>9}{single.get('p95_ms', '-'):>9}"
                f"{single.get('p99_ms', '-'):>9}{r['total']['requests_per_s']:>9}"
            )
    lines += [
        f"* right after the {config['clients']}-client phase, without a warm-up",
        "",
        f"throughput ratio (batched / unbatched, {config['clients']} clients): "
        f"{results['throughput_ratio']}",
        f"batched throughput, {config['clients']} clients / 1 client: {results['scaling']}",
        f"1 client, batched p50 - unbatched p50: {results['single_client_p50_extra_ms']} ms "
        f"(right after the {config['clients']}-client phase: "
        f"{results['after_burst_p50_extra_ms']} ms)",
        "",
        "goals:",
        *(f"  {goal}: {'PASS' if ok else 'FAIL'}" for goal, ok in results["goals"].items()),
    ]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    config, total, rss = results["config"], results["total"], results["rss"]
    lines = [
        f"{config['clients']} clients, {total['seconds']} s, {config['workers']} worker(s), "
        f"{config['cpus']} cpus; one request in {config['batch_every']} is a "
        f"{config['batch_size']}-accident batch",
        "",
        f"{'kind':10}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}",
    ]
    for kind in KINDS:
        r = results[kind]
        lines.append(
            f"{kind:10}{r['requests']:>10}{r['errors']:>8}{r.get('p50_ms', '-'):>10}"
            f"{r.get('p95_ms', '-'):>10}{r.get('p99_ms', '-'):>10}"
        )
    lines += [
        f"{'total':10}{total['requests']:>10}{total['errors']:>8}",
        "",
        f"throughput: {total['requests_per_s']} requests/s, {total['accidents_per_s']} "
        f"accidents/s ({total['reconnects']} reconnects)",
        f"RSS: {rss['after_warmup_mib']} MiB after warm-up, {rss['peak_mib']} MiB peak, "
        f"{rss['after_run_mib']} MiB after the run: ratio {rss['ratio_after_to_warmup']} "
        f"(limit {rss['limit']})",
        f"ready after the run: {results['ready_after_run']}",
        f"result: {'PASS' if results['passed'] else 'FAIL'}",
    ]
    return "\n".join(lines)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module's docstring as written, and each option's default."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/load.py", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="duration of the load (with --compare: per service and number of clients)",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up load")
    parser.add_argument("--batch-size", type=int, default=100, help="accidents per batch")
    parser.add_argument(
        "--batch-every", type=int, default=5, help="one batch in N requests (0: never)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=ServiceSettings.model_fields["baac_workers"].default,
        help="service worker processes (default: the service's, BAAC_WORKERS)",
    )
    parser.add_argument("--rss-limit", type=float, default=1.10, help="RSS after / after warm-up")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="batched against unbatched, single accidents, 1 and --clients clients",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="results (default: bench/results/load.json, "
        "with --compare bench/results/batching.json)",
    )
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = ROOT / "bench" / "results" / ("batching.json" if args.compare else "load.json")
    if not has_outputs(ROOT) and not (ROOT / "data" / "raw").is_dir():
        raise SystemExit("no promoted model and no data/raw: run `make data` (or `make run`)")
    if args.compare:
        results = compare(args)
        print(compare_report(results))
    else:
        results = load(args)
        print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
