"""dsdet: DeepSpeed-centric training of object detectors at scale."""

__version__ = "0.1.0"
