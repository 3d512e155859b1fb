"""The command lines of the upstream control plane, as pure functions of where things are.

Everything listens on 127.0.0.1 only, speaks TLS with certificates from the lab's CA, and keeps its
files in the lab instance's directory (`lab down` removes it). The flags are upstream's documented
ones (`etcd --help`, `kube-apiserver --help`, …); nothing here depends on a version string.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.plan import CLUSTER_CIDR, SERVICE_CIDR
from lab.upstream.binaries import UpstreamBinaries
from lab.upstream.pki import UpstreamPki

LOOPBACK = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KUBE_PROXY_HEALTHZ = f"{LOOPBACK}:10256"
KUBE_PROXY_METRICS = f"{LOOPBACK}:10249"
"""kube-proxy's health and metrics listeners: on each node namespace's own loopback."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the control plane (chosen by the kernel at `lab up`)."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Layout:
    """Where the upstream control plane's files live inside the lab instance's directory."""

    directory: Path
    prefix: str

    @property
    def root(self) -> Path:
        """The upstream part of the instance directory."""
        return self.directory / "upstream"

    @property
    def etcd_data(self) -> Path:
        """etcd's data directory."""
        return self.root / "etcd"

    @property
    def apiserver_cert_dir(self) -> Path:
        """kube-apiserver's --cert-dir (unused while its certificate is given; kept inside the lab)."""
        return self.root / "apiserver-certs"

    @property
    def token_file(self) -> Path:
        """kube-apiserver's static token file: the lab's own admin token (the CLI's faults and status use it)."""
        return self.root / "tokens.csv"

    def kubeconfig(self, who: str) -> Path:
        """The kubeconfig of one client identity (admin, kube-controller-manager, node-1, bot, …)."""
        return self.root / "kubeconfigs" / f"{who}.kubeconfig"


def api_url(ports: Ports) -> str:
    """The API server's URL on loopback (the same URL works inside node namespaces, through the relay)."""
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd_argv(bins: UpstreamBinaries, pki: UpstreamPki, layout: Layout, ports: Ports) -> list[str]:
    """One etcd member on loopback with TLS for clients and peers, client certificates required."""
    name = f"{layout.prefix}-etcd"
    client = f"https://{LOOPBACK}:{ports.etcd_client}"
    peer = f"https://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(bins.etcd),
        f"--name={name}",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={name}",
        f"--cert-file={pki.etcd_server.cert}",
        f"--key-file={pki.etcd_server.key}",
        f"--trusted-ca-file={pki.ca}",
        "--client-cert-auth=true",
        f"--peer-cert-file={pki.etcd_server.cert}",
        f"--peer-key-file={pki.etcd_server.key}",
        f"--peer-trusted-ca-file={pki.ca}",
        "--peer-client-cert-auth=true",
    ]


def apiserver_argv(bins: UpstreamBinaries, pki: UpstreamPki, layout: Layout, ports: Ports) -> list[str]:
    """kube-apiserver on loopback: TLS from the lab's CA, Node and RBAC authorization, service-account keys."""
    return [
        str(bins.kube_apiserver),
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.apiserver_cert_dir}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca}",
        f"--etcd-servers=https://{LOOPBACK}:{ports.etcd_client}",
        f"--etcd-cafile={pki.ca}",
        f"--etcd-certfile={pki.apiserver_etcd_client.cert}",
        f"--etcd-keyfile={pki.apiserver_etcd_client.key}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--token-auth-file={layout.token_file}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Loopback may not be an Endpoints address, so the API server cannot publish itself in
        # default/kubernetes: the Service exists, without endpoints.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(bins: UpstreamBinaries, pki: UpstreamPki, layout: Layout, ports: Ports) -> list[str]:
    """kube-controller-manager: every default controller, each with its own service account."""
    kubeconfig = layout.kubeconfig("kube-controller-manager")
    return [
        str(bins.kube_controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        f"--tls-cert-file={pki.controller_manager.cert}",
        f"--tls-private-key-file={pki.controller_manager.key}",
        f"--client-ca-file={pki.ca}",
        f"--root-ca-file={pki.ca}",
        f"--service-account-private-key-file={pki.service_account_key}",
        "--use-service-account-credentials=true",
        f"--cluster-name=kubereach-lab-{layout.prefix}",
        f"--cluster-cidr={CLUSTER_CIDR}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
        "--controllers=*",
        "--leader-elect=false",
        "--profiling=false",
    ]


def scheduler_argv(bins: UpstreamBinaries, pki: UpstreamPki, layout: Layout, ports: Ports) -> list[str]:
    """kube-scheduler: schedules what nobody else binds (the lab binds the spec's pods itself)."""
    kubeconfig = layout.kubeconfig("kube-scheduler")
    return [
        str(bins.kube_scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        f"--tls-cert-file={pki.scheduler.cert}",
        f"--tls-private-key-file={pki.scheduler.key}",
        f"--client-ca-file={pki.ca}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kube_proxy_argv(bins: UpstreamBinaries, layout: Layout, node: str, netns: str, mode: str) -> list[str]:
    """A real kube-proxy inside a node's namespace, reaching the API over that namespace's loopback.

    The conntrack flags are zero because the conntrack limits are not the node namespace's to set
    (nf_conntrack_max is the host's); the listeners are on the node namespace's own loopback.
    """
    return [
        "ip", "netns", "exec", netns,
        str(bins.kube_proxy),
        f"--kubeconfig={layout.kubeconfig('kube-proxy')}",
        f"--hostname-override={node}",
        f"--proxy-mode={mode}",
        f"--cluster-cidr={CLUSTER_CIDR}",
        "--conntrack-max-per-core=0",
        "--conntrack-min=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        f"--healthz-bind-address={KUBE_PROXY_HEALTHZ}",
        f"--metrics-bind-address={KUBE_PROXY_METRICS}",
        "--v=2",
    ]  # fmt: skip


def process_markers(layout: Layout) -> list[str]:
    """Command-line arguments only this instance's upstream processes carry (for `lab down` after a crash)."""
    return [
        f"--data-dir={layout.etcd_data}",
        f"--cert-dir={layout.apiserver_cert_dir}",
        f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
        f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
        f"--kubeconfig={layout.kubeconfig('kube-proxy')}",
    ]
