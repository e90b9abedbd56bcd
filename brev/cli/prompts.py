"""Questions for a person at a terminal, never for a script: without a terminal on stdin (a CI
job, a coding agent, a pipe) nothing waits for an answer; the command fails at once with one
line naming the flag that answers the question instead."""

from __future__ import annotations

import sys

from brev.errors import BrevError


def can_ask() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, *, without_terminal: str) -> bool:
    """The person's yes or no (no by default); BrevError(`without_terminal`) with no terminal."""
    if not can_ask():
        raise BrevError(without_terminal)
    import typer

    return typer.confirm(question, default=False)


def secret(label: str, *, without_terminal: str) -> str:
    """What the person types, not echoed; BrevError(`without_terminal`) with no terminal."""
    if not can_ask():
        raise BrevError(without_terminal)
    import typer

    answer: str = typer.prompt(label, hide_input=True)
    return answer
