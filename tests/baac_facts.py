"""Facts about the bundled BAAC files that several tests check against (see SOURCES.md)."""

# Columns the 2024 silver Parquet copies add, computed from the outcome or redundant with the
# published ones: the loaders must drop every one of them.
OUTCOME_DERIVED_2024 = [
    "severity_index",
    "n_killed",
    "worst_severity_rank",
    "accident_severity_class",
    "severity_weight",
    "severity_rank",
    "n_people",
    "age",
    "fled_unidentified",
    "seat_conflict",
    "time_of_day",
]
