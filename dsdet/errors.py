"""The one exception type for user mistakes; every layer may import this leaf module."""


class DsdetError(Exception):
    """A problem the user can fix (bad config, file, host...): the CLI prints it on one line and exits 2."""
