"""Logging set-up: rank 0 speaks, other ranks report only warnings and errors."""

from __future__ import annotations

import logging
import sys


def setup_logging(rank: int) -> None:
    """Send dsdet's log to stderr with the rank in each line; quiet DeepSpeed's info chatter."""
    level = logging.INFO if rank == 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[%(asctime)s rank{rank}] %(message)s", "%H:%M:%S"))
    root = logging.getLogger("dsdet")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)
