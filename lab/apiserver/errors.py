"""API errors in the shape the Kubernetes API returns them: a metav1 `Status` with reason and code.

Every failure the store or the server reports is an `ApiError` subclass; `to_status()` gives the
JSON body and `code` the HTTP status, exactly as kube-apiserver would send them.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API refused; carries the HTTP code and the Status reason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.metadata = metadata or {}

    def to_status(self) -> dict[str, Any]:
        """The metav1 Status object for this error."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del status["reason"]
        if self.details is not None:
            status["details"] = self.details
        return status


class BadRequest(ApiError):
    """The request cannot be understood (malformed body, selector or parameter)."""

    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    """The request carried no valid bearer token."""

    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    """The authenticated (or anonymous) user may not do this."""

    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    """The object, namespace or resource does not exist."""

    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    """The verb is not supported on this path."""

    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    """An object with this name already exists."""

    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    """The write was based on a stale resourceVersion (optimistic concurrency)."""

    code = 409
    reason = "Conflict"


class Expired(ApiError):
    """The requested resourceVersion is older than the retained watch history."""

    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    """The request body's Content-Type is not one this server accepts."""

    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    """The object is well-formed JSON but not a valid object of its kind."""

    code = 422
    reason = "Invalid"


class InternalError(ApiError):
    """A failure kube-apiserver reports as 500 without a reason (e.g. a watch from an unparsable resourceVersion)."""

    code = 500
    reason = ""


class PageNotFound(ApiError):
    """A path no API group serves: kube-apiserver answers it as plain text, not as a Status."""

    code = 404
    reason = "NotFound"


def field_invalid(field: str, value: object, detail: str) -> dict[str, str]:
    """One `details.causes[]` entry of a 422 (reason FieldValueInvalid), as kube-apiserver writes it."""
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {detail}", "field": field}


def invalid(kind: str, name: str, causes: list[dict[str, str]]) -> Invalid:
    """The 422 for an object with one or more invalid fields: every cause in the message and details."""
    listed = [f"{c['field']}: {c['message']}" for c in causes]
    summary = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    return Invalid(f'{kind} "{name}" is invalid: {summary}', details={"name": name, "kind": kind, "causes": causes})


def object_details(plural: str, group: str, name: str) -> dict[str, Any]:
    """The `details` block of a Status about one object."""
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details
