"""Stage ingest-chunk: cut the raw BAAC dump into chronological chunk snapshots."""

import argparse
import sys
from pathlib import Path

from baac_severity.config import RAW_DIR, chunk_limit, load_params
from baac_severity.data.ingest import ingest
from baac_severity.data.io import run_stage
from baac_severity.data.tracked import check_recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.data.stages.ingest",
        description="DVC stage ingest-chunk: cut the raw BAAC dump into chronological chunk "
        "snapshots (params: data.raw_dir, data.years, ingest.chunk_size, ingest.chunks).",
    )
    parser.add_argument(
        "--raw-md5",
        help="refuse the raw dump unless DVC would hash it to this (dvc.yaml passes what "
        "data.dvc records; baac_severity/data/tracked.py says why)",
    )
    recorded_md5 = parser.parse_args(argv).raw_md5
    params = load_params()
    years = params.data.get("years")
    raw_dir = Path(params.data.get("raw_dir", RAW_DIR))

    def work() -> None:
        if recorded_md5 is not None:
            check_recorded(raw_dir, recorded_md5)
        ingest(
            raw_dir,
            list(years) if years else None,
            int(params.ingest.chunk_size),
            chunk_limit(params.ingest.chunks),
        )

    return run_stage("ingest-chunk", work)


if __name__ == "__main__":
    sys.exit(main())
