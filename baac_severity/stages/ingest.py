"""Stage ingest-chunk: cut the raw BAAC dump into chronological chunk snapshots."""

import sys
from pathlib import Path

from baac_severity.config import RAW_DIR, chunk_limit, load_params
from baac_severity.data.ingest import ingest
from baac_severity.data.io import run_stage


def main() -> int:
    params = load_params()
    years = params.data.get("years")
    return run_stage(
        "ingest-chunk",
        lambda: ingest(
            Path(params.data.get("raw_dir", RAW_DIR)),
            list(years) if years else None,
            int(params.ingest.chunk_size),
            chunk_limit(params.ingest.chunks),
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
