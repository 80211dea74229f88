"""Benchmarks: each prints its figures; BENCHMARKS.md records them and how to repeat them."""
