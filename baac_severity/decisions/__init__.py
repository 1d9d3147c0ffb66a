"""Which model to ship: experiments, paired comparisons, the promotion gate and registry, review
and retraining."""
