"""Stage out-of-time: each arrival chunk scored by a light model fitted on the chunks before it."""

import argparse
import sys

from baac_severity.config import load_params
from baac_severity.data.io import run_stage
from baac_severity.monitoring.out_of_time import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.stages.out_of_time",
        description="DVC stage out-of-time: fit on the training rows of earlier chunks, score "
        "each arriving chunk (params: target, model, features, monitor).",
    )
    parser.parse_args(argv)
    return run_stage("out-of-time", lambda: run(load_params()))


if __name__ == "__main__":
    sys.exit(main())
