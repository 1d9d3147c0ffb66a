"""Stage train: fit and evaluate the configured model, track the run in MLflow."""

import argparse
import sys

from baac_severity.config import EVALUATION, load_params
from baac_severity.data.io import read_json
from baac_severity.modeling.train import configure_logging, print_test_metrics, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baac_severity.stages.train",
        description="DVC stage train: fit and evaluate the configured model "
        "(params: target, model, features).",
    )
    parser.add_argument(
        "--show", action="store_true", help=f"only print the test metrics of {EVALUATION}"
    )
    args = parser.parse_args(argv)
    if args.show:
        print_test_metrics(read_json(EVALUATION))
        return 0
    configure_logging()
    print_test_metrics(train(load_params()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
