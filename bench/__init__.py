"""Reproducible benchmarks, each printing a table beside its reference (see the README)."""
