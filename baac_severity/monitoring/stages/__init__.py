"""The DVC stages of the monitoring layer, one thin module each (dvc.yaml): out-of-time, drift."""
