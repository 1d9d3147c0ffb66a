"""Stage clean-scd2: fold the new chunks into the SCD Type 2 histories of accidents and users."""

import sys

from baac_severity.data.clean import clean
from baac_severity.data.io import run_stage


def main() -> int:
    return run_stage("clean-scd2", clean)


if __name__ == "__main__":
    sys.exit(main())
