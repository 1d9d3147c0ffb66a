"""Stage split: the stable stratified train/validation/test assignment."""

import sys

import numpy as np

from baac_severity.config import load_params
from baac_severity.data.split import SPLITS, split


def main() -> int:
    params = load_params().split
    fractions = [float(params.train), float(params.validation), float(params.test)]
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise SystemExit(f"split fractions must be non-negative and sum to 1, not {fractions}")
    report = split(int(params.seed), fractions)
    print(
        "split: "
        + ", ".join(f"{s} {report[s]['accidents']} ({report[s]['share']:.1%})" for s in SPLITS),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
