"""Benchmarks that print comparable figures (JSON and a table)."""
