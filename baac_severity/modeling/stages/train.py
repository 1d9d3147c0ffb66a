"""Stage train: fit and evaluate the configured model, track the run in MLflow."""

import sys

from baac_severity.config import load_params
from baac_severity.modeling.train import configure_logging, print_test_metrics, train


def main() -> int:
    configure_logging()
    print_test_metrics(train(load_params()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
