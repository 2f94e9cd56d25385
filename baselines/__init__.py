"""Recommenders benchmarked by the harness (registered by name into bench)."""
