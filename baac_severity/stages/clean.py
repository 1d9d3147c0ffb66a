"""Stage clean-scd2: fold the new chunks into the SCD Type 2 histories of accidents and users."""

import argparse
import sys

from baac_severity.data.clean import clean
from baac_severity.data.io import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.stages.clean",
        description="DVC stage clean-scd2: clean the ingested chunks and keep SCD Type 2 "
        "histories of accidents and road users in data/clean/.",
    )
    parser.parse_args(argv)
    return run_stage("clean-scd2", clean)


if __name__ == "__main__":
    sys.exit(main())
