"""Label and field selectors as the Kubernetes API parses and applies them.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas
(AND). Field selectors: `path=v`, `path==v`, `path!=v`, joined by commas, over the fields each kind
supports (metadata.name and metadata.namespace everywhere, more for pods, nodes and namespaces).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.apiserver.errors import BadRequest

_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class LabelRequirement:
    """One clause of a label selector."""

    key: str
    operator: str
    """One of "=", "!=", "in", "notin", "exists", "!exists"."""
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label map satisfies this clause."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" also match objects without the key, as in Kubernetes.
        return not present or value not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether a label map satisfies every clause."""
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)


@dataclass(frozen=True)
class FieldRequirement:
    """One clause of a field selector."""

    path: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector; the empty selector matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object's fields satisfy every clause."""
        for req in self.requirements:
            actual = field_value(obj, req.path)
            if (actual == req.value) != req.equal:
                return False
        return True


_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "Pod": _COMMON_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    },
    "Node": _COMMON_FIELDS | {"spec.unschedulable"},
    "Namespace": _COMMON_FIELDS | {"status.phase"},
    "Service": _COMMON_FIELDS | {"spec.clusterIP", "spec.type"},
}
"""The field selectors kube-apiserver v1.36 accepts per kind (every other kind: metadata.name and
metadata.namespace only, EndpointSlices included)."""
_BOOLEAN_FIELDS = frozenset({"spec.hostNetwork", "spec.unschedulable"})
"""Fields the server compares as strconv.FormatBool: an absent one is "false"."""
_UNSELECTABLE_FIELDS = frozenset({"status.podIPs"})
"""Accepted by the field-label conversion but not in the pod's selectable fields: never equal to a value."""


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise BadRequest(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return parts


def _check_key(key: str, clause: str) -> str:
    if not _KEY.match(key):
        raise BadRequest(f"unable to parse requirement: invalid label key {key!r} in {clause!r}")
    return key


def _check_value(value: str, clause: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise BadRequest(f"unable to parse requirement: invalid label value {value!r} in {clause!r}")
    return value


_SET_CLAUSE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQ_CLAUSE = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a label selector string; BadRequest with the offending clause if it is malformed."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[LabelRequirement] = []
    for clause in _split_top_level(text):
        stripped = clause.strip()
        if not stripped:
            raise BadRequest(f"unable to parse requirement: empty clause in {text!r}")
        set_match = _SET_CLAUSE.match(stripped)
        if set_match:
            key = _check_key(set_match.group(1), stripped)
            values = tuple(_check_value(v.strip(), stripped) for v in set_match.group(3).split(","))
            if values == ("",) and set_match.group(2) == "in":
                raise BadRequest(f"unable to parse requirement: empty value set in {stripped!r}")
            requirements.append(LabelRequirement(key, set_match.group(2), values))
            continue
        eq_match = _EQ_CLAUSE.match(stripped)
        if eq_match:
            key = _check_key(eq_match.group(1), stripped)
            operator = "!=" if eq_match.group(2) == "!=" else "="
            requirements.append(LabelRequirement(key, operator, (_check_value(eq_match.group(3), stripped),)))
            continue
        if stripped.startswith("!"):
            requirements.append(LabelRequirement(_check_key(stripped[1:].strip(), stripped), "!exists"))
            continue
        requirements.append(LabelRequirement(_check_key(stripped, stripped), "exists"))
    return LabelSelector(tuple(requirements))


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    """Parse a field selector for objects of `kind`; BadRequest for malformed or unsupported fields."""
    if text is None or not text.strip():
        return FieldSelector()
    supported = SUPPORTED_FIELDS.get(kind, _COMMON_FIELDS)
    requirements: list[FieldRequirement] = []
    for clause in text.split(","):
        stripped = clause.strip()
        for operator in ("!=", "==", "="):
            if operator in stripped:
                path, _, value = stripped.partition(operator)
                break
        else:
            raise BadRequest(f"invalid selector: {text!r}; expected field=value, field==value or field!=value")
        path = path.strip()
        if path not in supported:
            raise BadRequest(f'"{path}" is not a known field selector: only "' + '", "'.join(sorted(supported)) + '"')
        requirements.append(FieldRequirement(path, operator != "!=", value.strip()))
    return FieldSelector(tuple(requirements))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a field as field selectors compare it ("" when absent; "false" for an
    absent boolean the server defaults)."""
    if path in _UNSELECTABLE_FIELDS:
        return ""
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if current is None:
        return "false" if path in _BOOLEAN_FIELDS else ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def matches_label_map(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether labels carry every key=value of a map selector (a Service's spec.selector).

    An empty or missing map matches nothing here, as a Service without a selector selects no pods.
    """
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())
