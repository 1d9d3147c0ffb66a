"""Whether the model still holds: out-of-time evaluation, drift tests, the prediction log and live
monitoring."""
