"""Patch documents applied to stored objects: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

Strategic merge patches are applied as merge patches: maps merge, lists are replaced whole.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.apiserver.errors import BadRequest, Invalid, UnsupportedMediaType

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: the result of merging `patch` into `target` (neither argument is changed)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise BadRequest(f"json patch path {path!r} must start with '/'")
    return [_unescape(token) for token in path[1:].split("/")]


def _index(container: list[Any], segment: str, *, for_insert: bool) -> int:
    if segment == "-" and for_insert:
        return len(container)
    if not segment.isdigit():
        raise Invalid(f"json patch: {segment!r} is not a list index")
    index = int(segment)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise Invalid(f"json patch: index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise Invalid(f"json patch: path element {token!r} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_insert=False)]
        else:
            raise Invalid(f"json patch: cannot descend into {token!r}")
    return current


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise Invalid(f"json patch: path element {last!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_insert=False)]
    raise Invalid(f"json patch: cannot read {last!r}")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise Invalid(f"json patch: cannot remove missing {last!r}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_insert=False))
    raise Invalid(f"json patch: cannot remove {last!r}")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_insert=True), value)
    else:
        raise Invalid(f"json patch: cannot add under {last!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: apply a list of operations to a copy of `target`."""
    if not isinstance(operations, list):
        raise BadRequest("a json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise BadRequest(f"json patch operation {operation!r} needs 'op' and 'path'")
        op = operation["op"]
        tokens = _pointer(str(operation["path"]))
        if op == "add":
            doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(doc, tokens)
        elif op == "replace":
            _get(doc, tokens)
            if not tokens:
                doc = copy.deepcopy(operation.get("value"))
            else:
                _remove(doc, tokens)
                doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(str(operation.get("from", "")))
            value = _get(doc, source)
            if op == "move":
                _remove(doc, source)
            doc = _add(doc, tokens, copy.deepcopy(value))
        elif op == "test":
            if _get(doc, tokens) != operation.get("value"):
                raise Invalid(f"json patch test failed at {operation['path']!r}")
        else:
            raise BadRequest(f"json patch operation {op!r} is not one of add, remove, replace, move, copy, test")
    return doc


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a patch body of the given media type; UnsupportedMediaType for apply patches and others."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object")
        result = merge_patch(target, patch)
    elif media == JSON_PATCH:
        result = json_patch(target, patch)
    else:
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}"
        )
    if not isinstance(result, dict):
        raise Invalid("the patched object is not a JSON object")
    return result
