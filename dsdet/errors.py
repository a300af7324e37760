"""The one exception type for user mistakes, and how a rank prints it; every layer may import this leaf module."""

import os


class DsdetError(Exception):
    """A problem the user can fix (bad config, file, host...): the CLI prints it on one line and exits 2."""


def error_line(message: object) -> str:
    """`dsdet: error (rank R): message`, naming the rank only in a job of several ranks."""
    rank = os.environ.get("RANK", "0")
    where = f" (rank {rank})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    return f"dsdet: error{where}: {message}"
