"""Errors people see: one class, one place that turns them into exit codes and messages.

A `KubereachError` carries what happened, what it means and what to do next. Foreign errors are
converted at the module that meets them; the CLI prints `str(error)` and exits with `exit_code`.
"""

from __future__ import annotations


class KubereachError(Exception):
    """A failure with a message a person can act on.

    `exit_code` 2 means the request itself was wrong (bad input); 1 means it could not be carried out.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class BadInput(KubereachError):
    """The request cannot be read or names something that does not exist."""

    exit_code = 2
