"""Orchestra's benchmarks: `python bench/run.py` (or `make bench`); see docs/performance.md."""
