"""Load benchmarks: `make bench` (see README, "Benchmarks")."""
