"""Test and benchmark rigs (a sandboxed repository, a local service); not shipped in the wheel."""
