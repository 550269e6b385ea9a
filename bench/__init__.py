"""Benchmarks (`make bench`): not tests; they print progress and write bench/results/."""
