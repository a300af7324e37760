"""dsdet's benchmark suite: `python -m benchmarks [--smoke] [--only NAME]` writes docs/BENCHMARKS.md."""
