"""The root of every error brev shows a person; importing it costs nothing."""

from __future__ import annotations


class BrevError(Exception):
    """An error with a message fit to show a person as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
