"""Pipeline benchmark: time and peak memory per stage of the full run, and the clean-scd2
time of each successive chunk.

    uv run python bench/stages.py            # full bundled data, default params
    uv run python bench/stages.py --quick    # 2018 only, chunks of 2,000 (a smoke run)

Runs in a temporary copy of the repository (real `dvc repro -s <stage>`), so the workspace
outputs are untouched. Goals: the whole run in ≤ 150 s on 2 cores (the monitoring stages
out-of-time and drift ≤ 45 s of it, first run: every chunk is fitted), the clean-scd2 time
of chunk 12 at most 1.5 x that of chunk 1, and an experiment on HistGradientBoosting at most
2.5 x the wall time of one on a forest.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from baac_severity.config import BACKTEST_CACHE, MODEL_FILE
from baac_severity.testing.sandbox import env, make_pipeline_repo, write_params

STAGES = ["ingest-chunk", "clean-scd2", "split", "train", "out-of-time", "drift"]
MONITORING = ["out-of-time", "drift"]  # issue 12: together ≤ 45 s on 2 cores
FAMILIES = ["random_forest", "hist_gradient_boosting"]  # issue 21: HGB ≤ 2.5 x a forest


def timed(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stderr of one child process and its own children."""
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stderr


def bench_stages(repo: Path) -> dict[str, tuple[float, float]]:
    results = {}
    for stage in STAGES:
        results[stage] = timed([sys.executable, "-m", "dvc", "repro", "-s", stage], repo)[:2]
        print(f"  {stage:<14} {results[stage][0]:7.1f} s   peak RSS {results[stage][1]:7.0f} MB")
    return results


def bench_families(repo: Path, overrides: list[str]) -> dict[str, float]:
    """Wall time of one experiment per model family, as `dvc exp run -S model=<family>` runs
    it after main: every stage that the new params touch (train, out-of-time), the out-of-time
    cache emptied first so that each family pays its light model's fits."""
    results = {}
    for family in FAMILIES:
        shutil.rmtree(repo / BACKTEST_CACHE, ignore_errors=True)
        # Another seed: with main's params the forest's stages would be up to date, not rerun.
        write_params(repo, [*overrides, f"model={family}", "model.random_state=7"])
        results[family] = timed([sys.executable, "-m", "dvc", "repro"], repo)[0]
        print(f"  {family:<24} {results[family]:7.1f} s")
    return results


def bench_chunks(repo: Path, overrides: list[str], chunks: int) -> tuple[list[float], list[float]]:
    """clean-scd2 time as chunks 1..n arrive one at a time: the whole process (start-up
    included, noisy) and the chunk's own work as the stage reports it."""
    process_times, work_times = [], []
    for arrived in range(1, chunks + 1):
        write_params(repo, [*overrides, f"ingest.chunks={arrived}"])
        timed([sys.executable, "-m", "baac_severity.data.stages.ingest"], repo)
        seconds, _, stderr = timed([sys.executable, "-m", "baac_severity.data.stages.clean"], repo)
        work = float(re.search(r"chunk \d+ applied in ([\d.]+) s", stderr).group(1))
        process_times.append(seconds)
        work_times.append(work)
        print(
            f"  chunk {arrived:>2}: clean-scd2 process {seconds:5.2f} s, chunk work {work:5.2f} s"
        )
    return process_times, work_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2018 only, chunks of 2,000")
    args = parser.parse_args()
    overrides = ["data.years=[2018]", "ingest.chunk_size=2000"] if args.quick else []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        repo = make_pipeline_repo(Path(tmp) / "stages", overrides)
        print(f"full run ({'quick' if args.quick else 'bundled 2018 + 2024'}), dvc repro -s:")
        stages = bench_stages(repo)
        total = sum(seconds for seconds, _ in stages.values())
        size_mb = (repo / MODEL_FILE).stat().st_size / 1e6
        total_chunks = yaml.safe_load((repo / "metrics" / "progress.json").read_text())["chunks"][
            "total"
        ]
        monitoring = sum(stages[stage][0] for stage in MONITORING)
        print(f"  total          {total:7.1f} s   (goal ≤ 150 s); model {size_mb:.1f} MB")
        print(f"  monitoring stages (out-of-time + drift): {monitoring:.1f} s (goal ≤ 45 s)")
        print("one experiment per model family (dvc repro after main, out-of-time cache empty):")
        families = bench_families(repo, overrides)
        ratio = families["hist_gradient_boosting"] / families["random_forest"]
        print(f"  HGB / forest experiment: {ratio:.2f} x (goal ≤ 2.5)")
        chunk_repo = make_pipeline_repo(Path(tmp) / "chunks", overrides)
        print("clean-scd2 per arriving chunk:")
        times, work = bench_chunks(chunk_repo, overrides, total_chunks)
    print(
        f"clean-scd2 process: median {statistics.median(times):.2f} s per chunk; "
        f"chunk {len(times)}/chunk 1 ratio {times[-1] / times[0]:.2f} (goal ≤ 1.5)"
    )
    print(
        f"clean-scd2 chunk work: median {statistics.median(work):.2f} s; "
        f"chunk {len(work)}/chunk 1 ratio {work[-1] / work[0]:.2f}; "
        f"last 3 / first 3 medians {statistics.median(work[-3:]) / statistics.median(work[:3]):.2f}"
    )
    print(
        f"train: {stages['train'][0]:.1f} s, peak RSS {stages['train'][1]:.0f} MB; "
        f"whole run {total:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
