"""The one exception type users see."""


class Tfl2RtlError(Exception):
    """A problem with the user's input or request, reported as one line.

    The message says what is wrong and what to do about it; the CLI prints it without a
    traceback and exits non-zero.
    """
