"""Helpers of `bench/sequence_suite.py` (a package, so `tests/test_bench.py`, which runs every
`bench/*.py` as a benchmark, does not take them for benchmarks)."""
