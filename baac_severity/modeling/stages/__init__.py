"""The DVC stage of the modeling layer (dvc.yaml): train, a thin module over
``baac_severity.modeling.train``."""
