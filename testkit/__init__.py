"""Helpers both the tests and the benchmarks use: real processes (Prometheus, free ports) and
history written into a real TSDB. Not shipped: the package list in pyproject.toml leaves it out."""
