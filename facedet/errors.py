"""One exception type for every problem a user can cause.

The CLI catches :class:`FacedetError` and prints its message as a single line
(``error: ...``) with a non-zero exit status, never a traceback.  Library code
raises it for bad input (missing files, corrupt weights, malformed annotations)
and lets genuine programming errors propagate as ordinary exceptions.
"""

from __future__ import annotations


class FacedetError(Exception):
    """A user-facing error whose message fits on one line."""

    def __init__(self, message: str) -> None:
        # Keep the contract "one line" even when the message embeds foreign text.
        super().__init__(" ".join(str(message).split()))
