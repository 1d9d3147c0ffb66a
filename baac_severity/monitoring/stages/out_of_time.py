"""Stage out-of-time: each arrival chunk scored by a light model fitted on the chunks before it."""

import sys

from baac_severity.config import load_params
from baac_severity.data.io import run_stage
from baac_severity.monitoring.out_of_time import run


def main() -> int:
    return run_stage("out-of-time", lambda: run(load_params()))


if __name__ == "__main__":
    sys.exit(main())
