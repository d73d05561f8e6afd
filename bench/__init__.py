"""Benchmarks (run as scripts: python bench/adapter.py)."""
