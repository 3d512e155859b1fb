"""The lab's one error type: what went wrong and what to do about it, in a line or two."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation that cannot be carried out; `exit_code` 2 marks bad input."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
