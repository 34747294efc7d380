"""Benchmarks: each bench_*.py module times kare_rules against a baseline measured in the same run."""
