"""Print the ingestion progress written by the ingest-chunk stage (``metrics/progress.json``),
quarantined rows included."""

from __future__ import annotations

from baac_severity.config import PROGRESS_FILE
from baac_severity.data.io import read_json


def next_chunk_count(progress: dict) -> int:
    """How many chunks to ask for so that exactly one more arrives (capped at the total)."""
    chunks = progress.get("chunks")
    if not chunks:
        return 1
    return min(int(chunks["ingested"]) + 1, int(chunks["total"]))


def render(progress: dict) -> str:
    chunks = progress["chunks"]
    lines = [
        f"chunks ingested: {chunks['ingested']}/{chunks['total']} "
        f"(chunk size {chunks['chunk_size']}, data as of {progress['as_of']})",
        f"{'table':<18}{'rows':>10}{'total':>10}{'%':>8}{'read':>10}{'quarantined':>13}",
    ]
    for table, entry in sorted(progress["tables"].items()):
        # read/quarantined are absent from a progress.json written before they existed.
        lines.append(
            f"{table:<18}{entry['rows']:>10}{entry['total']:>10}{entry['pct']:>8.1f}"
            f"{entry.get('read', ''):>10}{entry.get('quarantined', ''):>13}"
        )
    overall = progress["overall"]
    lines.append(
        f"{'overall':<18}{overall['rows']:>10}{overall['total']:>10}{overall['pct']:>8.1f}"
    )
    for table, reasons in sorted(progress.get("quarantine", {}).items()):
        for reason, count in sorted(reasons.items()):
            lines.append(f"quarantined {table} rows, {reason}: {count}")
    return "\n".join(lines)


def show(next_count: bool = False) -> int:
    """``baac progress``: the progress table (exit 1 before any ingestion), or with
    ``next_count`` the chunk count that ingests one more chunk."""
    progress = read_json(PROGRESS_FILE, default={})
    if next_count:
        print(next_chunk_count(progress))
        return 0
    if not progress:
        print(f"no ingestion yet ({PROGRESS_FILE} missing): run `make ingest_data_chunked`")
        return 1
    print(render(progress))
    return 0
