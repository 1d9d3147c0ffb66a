"""BAAC road-accident severity pipeline: one small module per DVC stage."""
