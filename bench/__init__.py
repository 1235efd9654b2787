"""Benchmarks against peers on the same machine in the same run (ratios, not absolute seconds)."""
