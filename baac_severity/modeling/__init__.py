"""Training, evaluation and the saved model."""
