"""Scale benchmark on SYNTHETIC data: the whole pipeline on 1x, 2x, 5x and 10x the bundled rows.

    uv run --frozen python bench/scale.py                 # make bench_scale
    uv run --frozen python bench/scale.py --factors 1 2   # a quicker look

Each factor k gets a temporary copy of the repository whose ``data/raw`` holds k copies of the
bundled BAAC rows: copy c keeps the original rows with new keys (``Num_Acc`` serial + c x 10^7,
vehicle and user ids prefixed by c), so every accident is a distinct record. The data are
**synthetic** (repeated real rows) and live only in the temporary directory, never in ``data/``.

Every stage runs once (``dvc repro -s <stage>``, as ``bench/stages.py`` does) and is reported
with its wall time and peak RSS; the growth exponent b of each stage fits time ~ n^b (and
RSS ~ n^b) over the factors. The chunk size grows with the factor (12 chunks at every size), so
that the monitoring stages, which evaluate every chunk, do the same number of evaluations; the
clean-scd2 time of each chunk as the history grows (the stage's own per-chunk report) must stay
flat. The full 2005-2024 history is about 10x the bundle: the projection extrapolates each
stage from the fitted exponent. Figures go to ``bench/results/scale.json`` and the plot to
``docs/scale.svg``. The model runs with ``--trees`` trees (default 20 instead of 100) to keep
the whole run under 30 minutes on 2 cores; forest fit time is linear in the number of trees.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from baac_severity.config import ROOT
from baac_severity.testing.sandbox import dvc, make_pipeline_repo
from bench.stages import STAGES, timed

BUNDLED_CHUNK_SIZE = 10_000
FULL_HISTORY = 10  # the 2005-2024 BAAC history, in bundles (about 1.1 million accidents)
SERIAL = 10**7  # Num_Acc is year (4 digits) + serial (8 digits): copies 0-9 stay 12 digits
KEY = "Num_Acc"
IDS = ("id_vehicule", "id_usager")


def _synthetic_copy(frame: pd.DataFrame, copy: int) -> pd.DataFrame:
    """The rows of ``frame`` with the keys of synthetic copy ``copy`` (0: the original)."""
    if copy == 0:
        return frame
    frame = frame.copy()
    key = pd.to_numeric(frame[KEY].astype("string").str.strip())
    frame[KEY] = (key + copy * SERIAL).astype("string")
    for column in IDS:
        if column in frame:
            text = frame[column].astype("string").str.replace(r"[\s\u00a0\u202f]", "", regex=True)
            frame[column] = str(copy) + text
    return frame


def write_synthetic_raw(source: Path, dest: Path, factor: int) -> int:
    """``factor`` copies of every raw file of ``source`` into ``dest`` (same names, formats);
    returns the number of accidents written."""
    accidents = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".parquet"):
            frame = pd.read_parquet(path)
            synthetic = pd.concat([_synthetic_copy(frame, c) for c in range(factor)])
            synthetic.to_parquet(target, index=False)
        elif path.name.endswith(".csv.gz"):
            with gzip.open(path, "rt", encoding="latin-1") as text:
                header = text.readline().rstrip("\r\n").split(",")  # an unnamed first column
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="latin-1")
            synthetic = pd.concat([_synthetic_copy(frame, c) for c in range(factor)])
            synthetic.to_csv(
                target,
                index=False,
                header=header,
                encoding="latin-1",
                compression={"method": "gzip", "mtime": 0},
            )
        else:
            target.write_bytes(path.read_bytes())
            continue
        if path.name.startswith("caracteristiques"):
            accidents += len(synthetic)
    return accidents


def run_factor(tmp: Path, factor: int, trees: int) -> dict:
    """The whole pipeline on ``factor`` x the bundled rows: per stage seconds and peak MB, and
    the clean-scd2 seconds of each chunk."""
    overrides = [f"ingest.chunk_size={BUNDLED_CHUNK_SIZE * factor}", f"model.n_estimators={trees}"]
    repo = make_pipeline_repo(tmp / f"synthetic-{factor}x", overrides)
    raw = repo / "data" / "raw"
    for path in sorted(raw.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    accidents = write_synthetic_raw(ROOT / "data" / "raw", raw, factor)
    # Recorded as a user records new raw data: ingest-chunk refuses a dump data.dvc does not name.
    dvc("add", "-q", "data/raw", cwd=repo)
    print(f"SYNTHETIC {factor}x: {accidents:,} accidents in {raw}", flush=True)
    stages, chunks = {}, []
    for stage in STAGES:
        command = [sys.executable, "-m", "dvc", "repro", "-s", stage]
        seconds, peak_mb, stderr = timed(command, repo)
        stages[stage] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}
        if stage == "clean-scd2":
            chunks = [float(s) for s in re.findall(r"chunk \d+ applied in ([\d.]+) s", stderr)]
        print(f"  {stage:<14} {seconds:8.1f} s   peak RSS {peak_mb:7.0f} MB", flush=True)
    return {"accidents": accidents, "stages": stages, "clean_scd2_chunk_seconds": chunks}


def exponent(sizes: list[float], values: list[float]) -> float | None:
    """b of the least-squares fit values ~ sizes^b (log-log); None with fewer than 2 sizes."""
    if len(sizes) < 2:
        return None
    slope, _ = np.polyfit(np.log(sizes), np.log(values), 1)
    return round(float(slope), 2)


def summarise(runs: dict[int, dict], trees: int) -> dict:
    factors = sorted(runs)
    sizes = [runs[f]["accidents"] for f in factors]
    summary: dict = {"factors": factors, "accidents": sizes, "trees": trees, "stages": {}}
    full = sizes[0] / factors[0] * FULL_HISTORY
    for stage in STAGES:
        seconds = [runs[f]["stages"][stage]["seconds"] for f in factors]
        peaks = [runs[f]["stages"][stage]["peak_rss_mb"] for f in factors]
        b_time, b_rss = exponent(sizes, seconds), exponent(sizes, peaks)
        projected = seconds[-1] * (full / sizes[-1]) ** (b_time or 1.0)
        summary["stages"][stage] = {
            "seconds": seconds,
            "peak_rss_mb": peaks,
            "time_exponent": b_time,
            "rss_exponent": b_rss,
            "projected_seconds_full_history": round(projected, 1),
        }
    total = [sum(runs[f]["stages"][s]["seconds"] for s in STAGES) for f in factors]
    summary["total_seconds"] = total
    summary["total_time_exponent"] = exponent(sizes, total)
    chunk_flatness = {}
    for f in factors:
        per_chunk = runs[f]["clean_scd2_chunk_seconds"]
        if len(per_chunk) >= 6:
            first, last = np.median(per_chunk[:3]), np.median(per_chunk[-3:])
            chunk_flatness[str(f)] = round(float(last / first), 2)
    summary["clean_scd2_last3_over_first3"] = chunk_flatness
    return summary


def plot(runs: dict[int, dict], summary: dict, path: Path) -> None:
    factors = summary["factors"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        b = summary["stages"][stage]["time_exponent"]
        label = stage if b is None else f"{stage} (n^{b})"
        left.plot(summary["accidents"], summary["stages"][stage]["seconds"], "o-", label=label)
    left.set(xscale="log", yscale="log", xlabel="accidents (SYNTHETIC copies of the bundle)")
    left.set(ylabel="wall seconds", title="Pipeline stages vs data size (synthetic)")
    left.legend(fontsize=8)
    for f in factors:
        per_chunk = runs[f]["clean_scd2_chunk_seconds"]
        right.plot(range(1, len(per_chunk) + 1), per_chunk, "o-", label=f"synthetic {f}x")
    right.set(xlabel="chunk (history grows →)", ylabel="seconds for the chunk")
    right.set(title="clean-scd2: cost of each arriving chunk", ylim=(0, None))
    right.legend(fontsize=8)
    figure.text(0.01, 0.01, "SYNTHETIC data: repeated bundled rows with new keys", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No date in the SVG metadata: the same figures give the same file.
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)


def report(runs: dict[int, dict], summary: dict) -> str:
    lines = [
        f"SYNTHETIC data ({summary['trees']} trees); accidents per factor: "
        + ", ".join(
            f"{f}x {n:,}" for f, n in zip(summary["factors"], summary["accidents"], strict=True)
        ),
        "",
        f"{'stage':<14}"
        + "".join(f"{str(f) + 'x s':>9}" for f in summary["factors"])
        + f"{'b time':>8}{'b RSS':>7}{'peak MB':>9}{'full s':>9}",
    ]
    for stage, figures in summary["stages"].items():
        lines.append(
            f"{stage:<14}"
            + "".join(f"{s:>9.1f}" for s in figures["seconds"])
            + f"{figures['time_exponent'] or '-':>8}{figures['rss_exponent'] or '-':>7}"
            + f"{figures['peak_rss_mb'][-1]:>9.0f}"
            + f"{figures['projected_seconds_full_history']:>9.0f}"
        )
    lines += [
        f"{'total':<14}"
        + "".join(f"{s:>9.1f}" for s in summary["total_seconds"])
        + f"{summary['total_time_exponent'] or '-':>8}",
        "",
        "b: growth exponent, time (or peak RSS) ~ accidents^b; full s: projected for the full "
        f"2005-2024 history (~{FULL_HISTORY}x the bundle)",
        "clean-scd2 per-chunk seconds (12 chunks; flat = independent of the history):",
    ]
    for f in summary["factors"]:
        per_chunk = runs[f]["clean_scd2_chunk_seconds"]
        flat = summary["clean_scd2_last3_over_first3"].get(str(f), "-")
        lines.append(
            f"  {f}x: {' '.join(f'{s:.2f}' for s in per_chunk)}  (last 3 / first 3: {flat})"
        )
    return "\n".join(lines)


def save(runs: dict[int, dict], args: argparse.Namespace, started: float) -> dict:
    """The summary of the runs so far, written to ``args.json`` and plotted to ``args.plot``."""
    summary = summarise(runs, args.trees)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    summary["cpus"], summary["load_average_after"] = os.cpu_count(), os.getloadavg()
    plot(runs, summary, args.plot)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"synthetic": True, "runs": runs, **summary}, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--trees", type=int, default=20, help="trees of the benchmarked forest")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.svg")
    args = parser.parse_args(argv)
    if any(f < 1 or f > 10 for f in args.factors):
        parser.error("factors are 1 to 10 (copies keep Num_Acc at 12 digits)")
    started = time.monotonic()
    runs: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-synthetic-") as tmp:
        for factor in sorted(set(args.factors)):
            runs[factor] = run_factor(Path(tmp), factor, args.trees)
            # After each factor: an interrupted run still leaves the figures so far.
            summary = save(runs, args, started)
    print(report(runs, summary))
    print(f"whole benchmark: {summary['wall_seconds']:.0f} s")
    print(f"figures written to {args.json}, plot to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
