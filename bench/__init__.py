"""Benchmarks: each prints a table with the command that produced it."""
