"""One exception type for every problem a user can cause.

The CLI catches :class:`FacedetError` and prints its message as a single line
(``error: ...``) with a non-zero exit status, never a traceback.  Library code
raises it for bad input (missing files, corrupt weights, malformed annotations)
and lets genuine programming errors propagate as ordinary exceptions.
:class:`UsageError` marks a wrong command line (an option value out of range,
options that contradict each other), which exits with the usage status.
"""

from __future__ import annotations


class FacedetError(Exception):
    """A user-facing error whose message fits on one line."""

    def __init__(self, message: str) -> None:
        # Keep the contract "one line" even when the message embeds foreign text.
        super().__init__(" ".join(str(message).split()))


class UsageError(FacedetError):
    """The command line itself is wrong: a bad option value or combination.

    Raised before any work starts; the CLI exits with status 2, as for the
    errors the option parser finds (see :mod:`facedet.cli_common`).
    """


def short_error(exc: BaseException, limit: int = 160) -> str:
    """A foreign exception's message on one line, cut to ``limit`` characters (its type if empty)."""
    text = " ".join(str(exc).split())
    return text[:limit] if text else type(exc).__name__
