"""The DVC stages of the data layer, one thin module each (dvc.yaml): ingest-chunk, clean-scd2,
split. Each wires a library function of ``baac_severity.data`` to its inputs and outputs."""
