"""User-facing errors.

A :class:`GombnetError` is a mistake in the user's input (file, parameter, path). The CLI
prints its message on one line and exits with code 2, without a traceback. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class GombnetError(ValueError):
    """A problem with the user's input, reported as one line."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`GombnetError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise GombnetError(message)
