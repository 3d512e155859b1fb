"""Read Namespaces, Pods and NetworkPolicies from manifest files, as kubectl writes them.

Accepted: single objects, multi-document YAML (`---`), the v1 `List` that `kubectl get … -o yaml`
or `-o json` prints, typed lists such as `PodList` (items without `kind`), JSON or YAML, and
directories of `.yaml`/`.yml`/`.json` files (not recursive, like `kubectl apply -f DIR`). Kinds
other than Namespace, Pod and NetworkPolicy are skipped. Every problem is a `BadInput` naming the
file, the document (counted from 1) and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.errors import BadInput
from bot.policy.models import Cluster, Namespace, NetworkPolicy, Pod
from bot.policy.objects import (
    KIND_NAMESPACE,
    KIND_NETWORK_POLICY,
    KIND_POD,
    parse_namespace,
    parse_network_policy,
    parse_pod,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
"""The file names a directory is searched for."""


@dataclass(frozen=True)
class ManifestObject:
    """One Kubernetes object read from a file: where it came from and its dict."""

    path: Path
    document: int
    item: int | None
    kind: str
    body: Mapping[str, Any]

    @property
    def location(self) -> str:
        """`path: document N` or `path: document N, item M` (both counted from 1)."""
        where = f"{self.path}: document {self.document}"
        return where if self.item is None else f"{where}, item {self.item}"


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            child
            for child in path.iterdir()
            if child.is_file() and child.suffix.lower() in MANIFEST_SUFFIXES and not child.name.startswith(".")
        )
        if not files:
            raise BadInput(
                f"{path}: no .yaml, .yml or .json files in this directory",
                hint="point --manifests at the files or at a directory that holds them",
            )
        return files
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", hint="check the path given to --manifests")
    return [path]


def _read_text(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text", hint="manifests must be YAML or JSON text") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it ({exc.strerror})", hint="check the path and its permissions") from None


def _documents(path: Path, text: str) -> list[Any]:
    if path.suffix.lower() == ".json":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise BadInput(
                f"{path}: document 1: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                hint="fix the JSON (kubectl get -o json writes valid files)",
            ) from None
    documents: list[Any] = []
    loader = yaml.safe_load_all(text)
    while True:
        try:
            document = next(loader)
        except StopIteration:
            return documents
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise BadInput(
                f"{path}: document {len(documents) + 1}: not valid YAML: {problem}{at}",
                hint="fix the YAML (kubectl get -o yaml writes valid files)",
            ) from None
        documents.append(document)


def _objects_of(path: Path, index: int, document: Any) -> Iterator[ManifestObject]:
    if document is None:
        return  # an empty document, e.g. a trailing `---`
    if not isinstance(document, Mapping):
        raise BadInput(
            f"{path}: document {index}: expected a Kubernetes object, got {type(document).__name__}",
            hint="each document needs apiVersion, kind and metadata",
        )
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadInput(
            f"{path}: document {index}: has no kind",
            hint="each document needs apiVersion, kind and metadata",
        )
    if kind.endswith("List") and "items" in document:
        items = document.get("items") or []
        if not isinstance(items, list):
            raise BadInput(f"{path}: document {index}: {kind}.items is not a list", hint="fix the list")
        item_kind = kind.removesuffix("List")  # PodList items carry no kind of their own
        for item_index, item in enumerate(items, start=1):
            if not isinstance(item, Mapping):
                raise BadInput(
                    f"{path}: document {index}, item {item_index}: expected an object, got {type(item).__name__}",
                    hint="each item of a List is a Kubernetes object",
                )
            own_kind = item.get("kind") or item_kind
            if not isinstance(own_kind, str) or not own_kind:
                raise BadInput(f"{path}: document {index}, item {item_index}: has no kind", hint="add its kind")
            yield ManifestObject(path, index, item_index, own_kind, item)
        return
    yield ManifestObject(path, index, None, kind, document)


def load_objects(paths: Iterable[Path]) -> tuple[ManifestObject, ...]:
    """Every object in the given files and directories, in file order, Lists expanded."""
    objects: list[ManifestObject] = []
    for path in paths:
        for file in _manifest_files(Path(path)):
            for index, document in enumerate(_documents(file, _read_text(file)), start=1):
                objects.extend(_objects_of(file, index, document))
    return tuple(objects)


def cluster_from_manifests(objects: Iterable[ManifestObject]) -> Cluster:
    """A `Cluster` from read objects; a later object with the same kind and name replaces an earlier one."""
    namespaces: dict[str, Namespace] = {}
    pods: dict[tuple[str, str], Pod] = {}
    policies: dict[tuple[str, str], NetworkPolicy] = {}
    for obj in objects:
        try:
            if obj.kind == KIND_NAMESPACE:
                namespace = parse_namespace(obj.body)
                namespaces[namespace.name] = namespace
            elif obj.kind == KIND_POD:
                pod = parse_pod(obj.body)
                pods[(pod.namespace, pod.name)] = pod
            elif obj.kind == KIND_NETWORK_POLICY:
                policy = parse_network_policy(obj.body)
                policies[(policy.namespace, policy.name)] = policy
        except BadInput as exc:
            raise BadInput(f"{obj.location}: {exc.message}", hint=exc.hint) from None
    return Cluster(namespaces=namespaces, pods=tuple(pods.values()), policies=tuple(policies.values()))


def load_cluster(paths: Iterable[Path]) -> Cluster:
    """Read manifests (files or directories) into a `Cluster`; raises `BadInput` on any bad input."""
    return cluster_from_manifests(load_objects(paths))
