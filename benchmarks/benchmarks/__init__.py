"""nqsbench asv suite (numpy/scipy layout). Run from ``benchmarks/``: ``asv run --python=same``."""
