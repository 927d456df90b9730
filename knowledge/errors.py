"""The one exception type for expected, user-facing failures.

Bad input and infeasible requests ("needs 310 KB, the target has 256 KB") raise
``NanofactoryError`` with one sentence that says what is wrong and what to do.
The CLI prints that sentence and exits non-zero; bugs still raise their own
exceptions with a traceback.
"""


class NanofactoryError(Exception):
    """An expected failure with a message meant for a person."""

    exit_code = 1


class MissingInformation(NanofactoryError):
    """The request lacks something essential (device, classes); the message is the question."""

    exit_code = 2
