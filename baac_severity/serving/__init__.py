"""The BentoML prediction service: request schemas, inference, explanations, API keys, the docs
page."""
