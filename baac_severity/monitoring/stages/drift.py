"""Stage drift: per-feature drift of each arrival chunk against the earlier chunks."""

import sys

from baac_severity.config import load_params
from baac_severity.data.io import run_stage
from baac_severity.monitoring.drift import run
from baac_severity.monitoring.drift_report import render_html


def main() -> int:
    return run_stage("drift", lambda: run(load_params(), render_html))


if __name__ == "__main__":
    sys.exit(main())
