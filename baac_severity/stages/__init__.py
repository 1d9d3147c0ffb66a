"""One thin module per DVC stage (dvc.yaml): each wires a library function to its inputs and
outputs."""
