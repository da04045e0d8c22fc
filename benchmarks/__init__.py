"""Load benchmarks: `make bench` (method, latest results and targets: benchmarks/README.md)."""
