"""Stage ``ingest-chunk``: cut the raw dump into chronological chunks of whole accidents.

Accidents of every year are ordered by date (as far as the source gives it: 2018 has no day),
then by ``num_acc``, and cut into chunks of ``ingest.chunk_size``. Chunk k holds the rows of all
four tables for its accidents, so the tables of a chunk always line up. ``ingest.chunks`` says
how many chunks have arrived. A chunk directory is immutable: an existing chunk whose content
hash matches is left untouched, so ingesting chunk k+1 writes only chunk k+1.

Rows the loaders quarantine (duplicates, conflicting accidents: data/README.md) are written to
``data/chunks/quarantine/<table>.parquet`` with their source file, line and reason, and counted
in ``metrics/progress.json`` (per table: ``read`` = ``total`` + ``quarantined``; per reason
under ``quarantine``; per year under ``years``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from baac_severity.config import (
    CHUNKS_DIR,
    DATA_SUMMARY,
    PROGRESS_FILE,
)
from baac_severity.data import schema
from baac_severity.data.io import (
    atomic_directory,
    read_json,
    remove_leftovers,
    remove_tree,
    write_json,
    write_parquet,
)
from baac_severity.data.loaders import RawTables, load_raw_dump

CHUNK_MANIFEST = "chunk.json"
# Rows the loaders quarantined (data/README.md, "Bad and quarantined rows"): one Parquet file
# per table that has any, beside the chunks. Absent when nothing is quarantined.
QUARANTINE_DIR = "quarantine"


def chunk_dir(chunk_id: int, root: Path = CHUNKS_DIR) -> Path:
    return root / f"chunk-{chunk_id:04d}"


def event_order(characteristics: pd.DataFrame) -> pd.DataFrame:
    """Chronological order; accidents without a day are placed at the start of their month."""
    minutes = characteristics["hrmn"].str[:2].astype("Int64") * 60 + characteristics["hrmn"].str[
        3:5
    ].astype("Int64")
    day_known = characteristics["jour"].notna()
    order = pd.DataFrame(
        {
            schema.KEY: characteristics[schema.KEY],
            "an": characteristics["an"].astype("int64"),
            "mois": characteristics["mois"].fillna(1).astype("int64"),
            "jour": characteristics["jour"].fillna(0).astype("int64"),
            # Time of day orders accidents only within a known day.
            "minute": minutes.where(day_known, 0).fillna(0).astype("int64"),
        }
    )
    return order.sort_values(["an", "mois", "jour", "minute", schema.KEY], kind="stable")


def as_of_dates(order: pd.DataFrame) -> pd.Series:
    """The latest event date each accident stands for (month end when the day is unknown)."""
    month_start = pd.to_datetime(
        {"year": order["an"], "month": order["mois"], "day": 1}, errors="raise"
    )
    month_end = month_start + pd.offsets.MonthEnd(0)
    known = order["jour"] > 0
    return month_end.where(~known, month_start + pd.to_timedelta(order["jour"] - 1, unit="D"))


def content_hash(tables: dict[str, pd.DataFrame]) -> str:
    digest = hashlib.sha256()
    for table in schema.TABLE_NAMES:
        frame = tables[table]
        digest.update(f"{table}:{len(frame)}:{','.join(frame.columns)}".encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def plan_chunks(tables: dict[str, pd.DataFrame], chunk_size: int) -> pd.DataFrame:
    """One row per accident: its chunk id and as-of date, in chronological order."""
    order = event_order(tables["caracteristiques"]).reset_index(drop=True)
    order["chunk_id"] = np.arange(len(order)) // chunk_size + 1
    order["as_of"] = as_of_dates(order)
    return order[[schema.KEY, "chunk_id", "as_of"]]


def order_by_chunk(
    tables: dict[str, pd.DataFrame], plan: pd.DataFrame
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Each table sorted by accident order (child rows keep publication order), with the
    start offset of every chunk, so that a chunk is a cheap slice."""
    position = pd.Index(plan[schema.KEY]).get_indexer
    chunk_of = plan["chunk_id"].to_numpy()
    total_chunks = int(chunk_of.max())
    ordered = {}
    for table, frame in tables.items():
        rank = position(frame[schema.KEY])
        order = np.lexsort((np.arange(len(frame)), rank))
        chunk_ids = chunk_of[rank[order]]
        starts = np.searchsorted(chunk_ids, np.arange(1, total_chunks + 2))
        ordered[table] = (frame.iloc[order].reset_index(drop=True), starts)
    return ordered


def chunk_slice(ordered: dict[str, tuple[pd.DataFrame, np.ndarray]], chunk_id: int):
    return {
        table: frame.iloc[starts[chunk_id - 1] : starts[chunk_id]].reset_index(drop=True)
        for table, (frame, starts) in ordered.items()
    }


def write_chunk(chunk_id: int, as_of: pd.Timestamp, tables: dict[str, pd.DataFrame], root: Path):
    """Write a chunk unless an identical one exists; returns True when it was written."""
    digest = content_hash(tables)
    target = chunk_dir(chunk_id, root)
    existing = read_json(target / CHUNK_MANIFEST, default={})
    if existing.get("content_hash") == digest:
        return False
    with atomic_directory(target) as tmp:
        for table, frame in tables.items():
            write_parquet(frame, tmp / f"{table}.parquet")
        write_json(
            {
                "chunk_id": chunk_id,
                "as_of": as_of.date().isoformat(),
                "content_hash": digest,
                "rows": {table: len(frame) for table, frame in tables.items()},
            },
            tmp / CHUNK_MANIFEST,
        )
    return True


def write_quarantine(quarantine: dict[str, pd.DataFrame], root: Path) -> int:
    """Write the quarantined rows of the whole dump (or remove an outdated quarantine)."""
    target = root / QUARANTINE_DIR
    total = sum(len(frame) for frame in quarantine.values())
    if total == 0:
        if target.exists():
            remove_tree(target)
        return 0
    with atomic_directory(target) as tmp:
        for table, frame in quarantine.items():
            if len(frame):
                write_parquet(frame, tmp / f"{table}.parquet")
    return total


def accounting(counts: dict[str, dict[str, dict]]) -> dict:
    """Per year and table: rows read, kept and quarantined (read = kept + quarantined)."""
    return {
        year: {
            table: {key: entry[key] for key in ("read", "kept", "quarantined")}
            for table, entry in per_table.items()
        }
        for year, per_table in counts.items()
    }


def quarantine_reasons(counts: dict[str, dict[str, dict]]) -> dict[str, dict[str, int]]:
    """Quarantined rows per table and reason, every year together."""
    reasons: dict[str, dict[str, int]] = {table: {} for table in schema.TABLE_NAMES}
    for per_table in counts.values():
        for table, entry in per_table.items():
            for reason, count in entry["reasons"].items():
                reasons[table][reason] = reasons[table].get(reason, 0) + count
    return reasons


def progress_report(tables: RawTables, plan: pd.DataFrame, arrived: int, chunk_size: int) -> dict:
    total_chunks = int(plan["chunk_id"].max())
    keys = plan.loc[plan["chunk_id"] <= arrived, schema.KEY]
    per_table = {}
    for table, frame in tables.items():
        rows = int(frame[schema.KEY].isin(keys).sum())
        per_table[table] = {
            "rows": rows,
            "total": len(frame),
            "pct": round(100 * rows / len(frame), 2),
            # Over the whole dump, as counted by the loaders: read = total + quarantined.
            **{
                key: sum(year[table][key] for year in tables.counts.values())
                for key in ("read", "quarantined")
            },
        }
    rows = sum(entry["rows"] for entry in per_table.values())
    total = sum(entry["total"] for entry in per_table.values())
    last_as_of = plan.loc[plan["chunk_id"] <= arrived, "as_of"].max()
    return {
        "chunks": {"ingested": arrived, "total": total_chunks, "chunk_size": chunk_size},
        "as_of": last_as_of.date().isoformat(),
        "tables": per_table,
        "overall": {"rows": rows, "total": total, "pct": round(100 * rows / total, 2)},
        "quarantine": quarantine_reasons(tables.counts),
        "years": accounting(tables.counts),
    }


def data_summary(report: dict) -> dict:
    """The data snapshot in four scalars: the DVC metric every experiment row shows.

    The full report (per table, year and quarantine reason) stays in ``progress_file``, a plain
    output: as a metric, its ~35 constant counters filled ``dvc exp show`` before any model
    metric. Key order = column order of ``dvc exp show``.
    """
    return {
        "chunks_ingested": report["chunks"]["ingested"],
        "chunks_total": report["chunks"]["total"],
        "rows": report["overall"]["rows"],
        "data_as_of": report["as_of"],
    }


def ingest(
    raw_dir: Path,
    years: list[int] | None,
    chunk_size: int,
    chunks: int | None,
    out_dir: Path = CHUNKS_DIR,
    progress_file: Path = PROGRESS_FILE,
) -> dict:
    if chunk_size < 1:
        raise SystemExit(f"ingest.chunk_size must be positive, not {chunk_size}")
    tables = load_raw_dump(raw_dir, years)
    # A run killed mid-write (SIGKILL) may have left temporaries; DVC would hash them.
    summary_file = progress_file.with_name(DATA_SUMMARY.name)  # metrics/data.json beside it
    remove_leftovers(out_dir, progress_file, summary_file)
    plan = plan_chunks(tables, chunk_size)
    total_chunks = int(plan["chunk_id"].max())
    arrived = total_chunks if chunks is None else min(chunks, total_chunks)
    ordered = order_by_chunk(tables, plan)
    written = 0
    # disable=None: a bar on a terminal only; logs (make run, dvc, CI) get the summary below.
    bar = tqdm(range(1, arrived + 1), desc="ingest-chunk", unit="chunk", disable=None)
    for chunk_id in bar:
        as_of = plan.loc[plan["chunk_id"] == chunk_id, "as_of"].max()
        written += write_chunk(chunk_id, as_of, chunk_slice(ordered, chunk_id), out_dir)
    # Chunks beyond the arrived count (from an earlier, longer run) have not arrived now.
    for stale in sorted(out_dir.glob("chunk-*")):
        if stale.is_dir() and int(stale.name.split("-")[1]) > arrived:
            remove_tree(stale)
    quarantined = write_quarantine(tables.quarantine, out_dir)
    report = progress_report(tables, plan, arrived, chunk_size)
    write_json(report, progress_file)
    write_json(data_summary(report), summary_file, sort_keys=False)
    print(
        f"ingest-chunk: {arrived}/{total_chunks} chunks ({written} written, "
        f"{arrived - written} unchanged), {report['overall']['pct']}% of rows, "
        f"{quarantined} rows quarantined",
        file=sys.stderr,
    )
    return report
