"""Stage drift: per-feature drift of each arrival chunk against the earlier chunks."""

import argparse
import sys

from baac_severity.config import load_params
from baac_severity.data.io import run_stage
from baac_severity.monitoring.drift import run
from baac_severity.monitoring.drift_report import render_html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.stages.drift",
        description="DVC stage drift: per-feature drift of each arriving chunk against the "
        "training rows of the earlier chunks (params: features, monitor).",
    )
    parser.parse_args(argv)
    return run_stage("drift", lambda: run(load_params(), render_html))


if __name__ == "__main__":
    sys.exit(main())
