"""The one error type prediction reports to the user as a single line, without a traceback."""


class PredictError(Exception):
    """A problem with the user's inputs, weights or output folder, not a bug.

    The message is complete on its own (it names the offending path); command-line
    tools print it as one line.
    """
