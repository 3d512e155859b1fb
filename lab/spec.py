"""The lab's cluster spec: namespaces, workloads, services and NetworkPolicies, read from YAML.

The default spec ships with the package (`lab/specs/default.yaml`); `--spec FILE` takes another.
The spec says what exists; `lab.plan` decides where it runs and which addresses it gets.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.errors import LabError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
Protocol = Literal["TCP", "UDP", "SCTP"]


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label (lowercase letters, digits, '-')")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class NamespaceSpec(_Frozen):
    """A namespace and its labels (the implicit kubernetes.io/metadata.name label is added later)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)

    _name = field_validator("name")(_dns_label)


class ContainerPortSpec(_Frozen):
    """A port the workload's containers expose; the lab runs a real server on it."""

    name: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "TCP"


class WorkloadSpec(_Frozen):
    """A Deployment, StatefulSet or DaemonSet and its pods' shape."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    namespace: str
    name: str
    replicas: int = Field(default=1, ge=0, le=64)
    labels: dict[str, str]
    ports: tuple[ContainerPortSpec, ...] = ()
    role: Literal["app", "dns"] = "app"
    """`dns` pods run the lab's cluster DNS server on their port 53."""
    host_network: bool = Field(default=False, alias="hostNetwork")
    """A DaemonSet whose pods share their node's network namespace (a node-exporter, say): no pod
    namespace or veth, the node's IP as the pod's, servers on the node's ports, run under a cgroup
    naming the pod's UID as kubelet places a pod's processes."""
    dns_policy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default"] | None = Field(default=None, alias="dnsPolicy")
    """The pods' `dnsPolicy` (unset: Default for `dns` pods, ClusterFirst otherwise, as the API defaults it)."""

    _name = field_validator("name", "namespace")(_dns_label)

    @model_validator(mode="after")
    def _host_network(self) -> WorkloadSpec:
        if self.host_network and (self.kind != "DaemonSet" or self.role != "app"):
            raise ValueError(f"workload {self.namespace}/{self.name}: hostNetwork is for an app DaemonSet (one pod per node)")
        return self


class ServicePortSpec(_Frozen):
    """One service port; targetPort is a number or a container port name."""

    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = Field(default=None, alias="targetPort")
    protocol: Protocol = "TCP"
    node_port: int | None = Field(default=None, alias="nodePort", ge=30000, le=32767)


class ServiceSpec(_Frozen):
    """A Service; clusterIP is allocated from the service CIDR when not given ("None": headless).
    An ExternalName service has `externalName` and no clusterIP."""

    namespace: str
    name: str
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: tuple[ServicePortSpec, ...] = ()
    external_name: str | None = Field(default=None, alias="externalName")
    session_affinity: Literal["None", "ClientIP"] = Field(default="None", alias="sessionAffinity")
    external_ips: tuple[str, ...] = Field(default=(), alias="externalIPs")
    external_traffic_policy: Literal["Cluster", "Local"] = Field(default="Cluster", alias="externalTrafficPolicy")
    internal_traffic_policy: Literal["Cluster", "Local"] = Field(default="Cluster", alias="internalTrafficPolicy")

    _name = field_validator("name", "namespace")(_dns_label)

    @field_validator("cluster_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None and value != "None":
            ipaddress.IPv4Address(value)
        return value

    @model_validator(mode="after")
    def _kind(self) -> ServiceSpec:
        if (self.type == "ExternalName") != (self.external_name is not None):
            raise ValueError(f"{self.namespace}/{self.name}: externalName goes with type ExternalName, and only with it")
        if self.type == "ExternalName" and self.cluster_ip is not None:
            raise ValueError(f"{self.namespace}/{self.name}: an ExternalName service has no clusterIP")
        if self.type != "ExternalName" and not self.ports:
            raise ValueError(f"{self.namespace}/{self.name}: a {self.type} service needs ports")
        return self

    @field_validator("external_ips")
    @classmethod
    def _ips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ip in value:
            ipaddress.IPv4Address(ip)
        return value


class ClusterSpec(_Frozen):
    """The whole cluster the lab builds."""

    namespaces: tuple[NamespaceSpec, ...]
    workloads: tuple[WorkloadSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    network_policies: tuple[dict[str, Any], ...] = Field(default=(), alias="networkPolicies")

    @model_validator(mode="after")
    def _references(self) -> ClusterSpec:
        names = {ns.name for ns in self.namespaces}
        placed: list[tuple[str, str]] = [(w.namespace, w.name) for w in self.workloads]
        placed += [(s.namespace, s.name) for s in self.services]
        for namespace, name in placed:
            if namespace not in names:
                raise ValueError(f"{namespace}/{name} is in namespace {namespace!r}, which the spec does not declare")
        for policy in self.network_policies:
            meta = policy.get("metadata", {})
            if policy.get("kind") != "NetworkPolicy" or meta.get("namespace") not in names or not meta.get("name"):
                raise ValueError(
                    f"networkPolicies: {meta.get('name')!r} needs kind NetworkPolicy, a name and a declared namespace"
                )
        seen: set[tuple[str, str, str]] = set()
        for w in self.workloads:
            key = (w.kind, w.namespace, w.name)
            if key in seen:
                raise ValueError(f"workload {w.kind} {w.namespace}/{w.name} is declared twice")
            seen.add(key)
        return self


def load_spec(path: Path | None = None) -> ClusterSpec:
    """Read a cluster spec: `path`, or the default spec shipped with the package."""
    if path is None:
        text = resources.files("lab").joinpath("specs/default.yaml").read_text()
        origin = "default spec"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise LabError(f"cannot read spec {path}: {exc.strerror}", exit_code=2) from exc
        origin = str(path)
    try:
        data = yaml.safe_load(text)
        return ClusterSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise LabError(f"{origin} is not valid YAML: {exc}", exit_code=2) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LabError(f"{origin}: {where}: {first['msg']}", exit_code=2) from exc
