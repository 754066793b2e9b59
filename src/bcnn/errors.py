"""The one exception type bcnn raises for bad input; the CLI turns it into a one-line message and exit 2."""


class BcnnError(Exception):
    """A user-facing error: bad model, bad data, bad file, missing tool. The message says what and why."""
