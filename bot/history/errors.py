"""Errors of the investigation history, in words a person can act on."""

from __future__ import annotations

from bot.errors import BadInput, KubereachError


class HistoryError(KubereachError):
    """The history database could not be read or written."""


class HistoryUnavailable(HistoryError):
    """The history database cannot be reached or has no schema yet."""


class InvestigationNotFound(BadInput):
    """No investigation has the given id."""

    def __init__(self, investigation_id: str) -> None:
        super().__init__(
            f"no investigation has the id {investigation_id!r}",
            hint="ids look like inv_01JD…; `kubereach search` lists recent ones",
        )
        self.investigation_id = investigation_id
