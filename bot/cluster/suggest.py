"""Near misses: which existing objects a misspelt or mis-placed name most likely meant.

Pure. Given the name that was asked for and the objects that exist (`NamedObject`s across kinds and
namespaces), `suggest` ranks: the same name in another namespace or under another kind first, then
pod-name prefixes mapped to their workload ("web-7d9" -> deploy/web), then spelling neighbours
(difflib ratio). Suggestions are written the way people type them back: "deploy/frontend in shop".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

KIND_PREFIXES: dict[str, str] = {
    "Pod": "pod",
    "Service": "svc",
    "Deployment": "deploy",
    "StatefulSet": "sts",
    "DaemonSet": "ds",
    "Node": "node",
}

SPELLING_CUTOFF = 0.6
MIN_PREFIX = 3


@dataclass(frozen=True)
class NamedObject:
    """Something a name could refer to: its kind ("Deployment"), namespace ("" if cluster-scoped) and name.

    For pods, `workload_kind`/`workload_name` name the top-level owner, so that a pod-name prefix can
    be answered with the workload.
    """

    kind: str
    namespace: str
    name: str
    workload_kind: str | None = None
    workload_name: str | None = None

    def display(self) -> str:
        """``deploy/frontend in shop``, ``node/node-1``."""
        text = f"{KIND_PREFIXES.get(self.kind, self.kind.lower())}/{self.name}"
        return f"{text} in {self.namespace}" if self.namespace else text


def describe(kind: str, namespace: str, name: str) -> str:
    """An object written as a person would type it back: ``svc/api in shop``."""
    return NamedObject(kind, namespace, name).display()


def suggest(name: str, objects: Iterable[NamedObject], *, kinds: Iterable[str] = (), limit: int = 3) -> tuple[str, ...]:
    """Up to `limit` objects the person probably meant by `name`, best first.

    `kinds` are the kinds the reference asked for; among equally good matches they come first.
    """
    wanted = set(kinds)
    wanted_name = name.lower()
    scored: dict[str, tuple[float, str]] = {}

    def offer(obj: NamedObject, score: float) -> None:
        if obj.kind in wanted:
            score += 0.01
        text = obj.display()
        best = scored.get(text)
        if best is None or score > best[0]:
            scored[text] = (score, text)

    for obj in objects:
        candidate = obj.name.lower()
        if candidate == wanted_name:
            offer(obj, 2.0)
            continue
        if obj.kind == "Pod" and obj.workload_name is not None and obj.workload_kind is not None:
            workload = NamedObject(obj.workload_kind, obj.namespace, obj.workload_name)
            prefix_of_pod = len(wanted_name) >= MIN_PREFIX and candidate.startswith(wanted_name)
            workload_prefix = wanted_name.startswith(obj.workload_name.lower() + "-")
            if prefix_of_pod or workload_prefix:
                offer(workload, 1.5 + len(obj.workload_name) / 1000)
                continue
            ratio = difflib.SequenceMatcher(None, wanted_name, obj.workload_name.lower()).ratio()
            if ratio >= SPELLING_CUTOFF:
                offer(workload, ratio)
            continue
        if obj.kind != "Pod" and wanted_name.startswith(candidate + "-"):
            offer(obj, 1.4 + len(candidate) / 1000)
            continue
        ratio = difflib.SequenceMatcher(None, wanted_name, candidate).ratio()
        if ratio >= SPELLING_CUTOFF:
            offer(obj, ratio)
    ranked = sorted(scored.values(), key=lambda item: (-item[0], item[1]))
    return tuple(text for _score, text in ranked[:limit])


def did_you_mean(suggestions: tuple[str, ...]) -> str:
    """``did you mean svc/api in shop or deploy/api in shop?`` (empty when there is nothing to offer)."""
    if not suggestions:
        return ""
    if len(suggestions) == 1:
        return f"did you mean {suggestions[0]}?"
    return f"did you mean {', '.join(suggestions[:-1])} or {suggestions[-1]}?"
