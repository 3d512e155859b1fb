"""What can go wrong when the bot asks the Kubernetes API, as errors a person can act on.

`ClusterUnavailable` covers everything between us and an answer (no connection, timeout, rejected
credentials, server errors); `ClusterAccessDenied` is the 403 case and names the RBAC rule that is
missing; `ClusterNoCredentials` is the 403 a request without credentials gets (`system:anonymous`).
`ResolutionError` means the question names something the cluster does not have (or names it
ambiguously) and carries the verdict code and the suggestions; `NamespaceNotAllowed` means the asker
may not look into a namespace.
"""

from __future__ import annotations

from typing import Literal

from bot.errors import BadInput, KubereachError
from bot.parse.models import Ref
from bot.verdicts import VerdictCode


class ClusterUnavailable(KubereachError):
    """The Kubernetes API could not be asked, or did not answer usefully."""

    def __init__(self, message: str, *, hint: str | None = None, server: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.server = server


class ClusterNoCredentials(ClusterUnavailable):
    """The API server answered as to `system:anonymous`: the request carried no credentials at all."""


class ClusterAccessDenied(ClusterUnavailable):
    """The API server refused a request (403): the bot's identity lacks an RBAC rule."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        server: str | None = None,
        verb: str,
        resource: str,
        group: str,
        namespace: str | None,
    ) -> None:
        super().__init__(message, hint=hint, server=server)
        self.verb = verb
        self.resource = resource
        self.group = group
        self.namespace = namespace


class ResolutionError(BadInput):
    """A name in the question resolves to nothing, or to several things.

    `code` is `SOURCE_NOT_FOUND`, `TARGET_NOT_FOUND` or `AMBIGUOUS_NAME`; `suggestions` are near
    names ("deploy/frontend in shop"); `candidates` are the objects an ambiguous name matched, as
    people read them, and `candidate_refs` the same as references that name each one precisely, for
    the `role` ("source" or "target") the ambiguous name plays.
    """

    def __init__(
        self,
        message: str,
        *,
        code: VerdictCode,
        hint: str | None = None,
        suggestions: tuple[str, ...] = (),
        candidates: tuple[str, ...] = (),
        candidate_refs: tuple[Ref, ...] = (),
        role: Literal["source", "target"] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.suggestions = suggestions
        self.candidates = candidates
        self.candidate_refs = candidate_refs
        self.role = role


class NamespaceNotAllowed(KubereachError):
    """The question touches a namespace outside the ones the asker may look at."""

    exit_code = 2

    def __init__(self, namespace: str, allowed: frozenset[str], *, what: str | None = None) -> None:
        names = ", ".join(sorted(allowed)) or "none"
        subject = f"{what} is in namespace {namespace}" if what else f"namespace {namespace} is not allowed here"
        super().__init__(
            f"{subject}, which this channel may not ask about (allowed: {names})",
            hint="ask in a channel that covers that namespace, or ask an admin to allow it for this channel",
        )
        self.namespace = namespace
        self.allowed = allowed
