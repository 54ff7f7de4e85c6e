"""nqsbench: neural-network quantum states on periodic solids, validated against references."""
__version__ = "0.1.0"
