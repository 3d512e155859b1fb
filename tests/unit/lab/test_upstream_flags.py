"""The upstream command lines: loopback only, TLS everywhere, RBAC with the Node authorizer, the lab's own
keys and files, the real kube-proxy inside its node namespace; and the kubeconfigs clients read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from lab.certs import generate_pki
from lab.upstream.binaries import REQUIRED, UpstreamBinaries
from lab.upstream.control import token_file_line, write_kubeconfigs
from lab.upstream.flags import (
    Layout,
    Ports,
    api_url,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    kube_proxy_argv,
    process_markers,
    scheduler_argv,
)
from lab.upstream.pki import UpstreamPki, generate_upstream_pki

PORTS = Ports(etcd_client=40001, etcd_peer=40002, apiserver=40003, controller_manager=40004, scheduler=40005)
BIN = Path("/opt/k8s/bin")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[UpstreamBinaries, UpstreamPki, Layout]:
    directory = tmp_path_factory.mktemp("kuf") / "kuf"
    generate_pki(directory / "pki", ["node-1", "node-2"])
    pki = generate_upstream_pki(directory / "pki", ["node-1", "node-2"])
    binaries = UpstreamBinaries(BIN, *(BIN / name for name in REQUIRED))
    return binaries, pki, Layout(directory, "kuf")


def _flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            assert key not in out, f"--{key} given twice"
            out[key] = value
    return out


def _all(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> dict[str, list[str]]:
    binaries, pki, layout = setup
    return {
        "etcd": etcd_argv(binaries, pki, layout, PORTS),
        "kube-apiserver": apiserver_argv(binaries, pki, layout, PORTS),
        "kube-controller-manager": controller_manager_argv(binaries, pki, layout, PORTS),
        "kube-scheduler": scheduler_argv(binaries, pki, layout, PORTS),
        "kube-proxy": kube_proxy_argv(binaries, layout, "node-1", "kuf-node-1", "nftables"),
    }


def test_every_address_in_every_command_line_is_loopback(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> None:
    for name, argv in _all(setup).items():
        text = " ".join(argv)
        addresses = set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text))
        assert addresses <= {"127.0.0.1", "10.244.0.0", "10.96.0.0"}, (name, addresses)
        assert "0.0.0.0" not in text and "localhost" not in text
        issuer = _flags(argv).get("service-account-issuer")  # a name in tokens, never dialled
        for url in re.findall(r"[a-z]+://[^,\s]+", text):
            assert url == issuer or url.startswith("https://127.0.0.1:"), (name, url)


def test_every_listener_is_bound_to_loopback(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> None:
    argvs = {name: _flags(argv) for name, argv in _all(setup).items()}
    assert argvs["kube-apiserver"]["bind-address"] == "127.0.0.1"
    assert argvs["kube-apiserver"]["advertise-address"] == "127.0.0.1"
    assert argvs["kube-controller-manager"]["bind-address"] == "127.0.0.1"
    assert argvs["kube-scheduler"]["bind-address"] == "127.0.0.1"
    assert argvs["etcd"]["listen-client-urls"] == "https://127.0.0.1:40001"
    assert argvs["etcd"]["listen-peer-urls"] == "https://127.0.0.1:40002"
    assert argvs["kube-proxy"]["healthz-bind-address"].startswith("127.0.0.1:")
    assert argvs["kube-proxy"]["metrics-bind-address"].startswith("127.0.0.1:")


def test_etcd_demands_client_certificates_from_the_lab_ca(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> None:
    _, pki, layout = setup
    flags = _flags(_all(setup)["etcd"])
    assert flags["client-cert-auth"] == flags["peer-client-cert-auth"] == "true"
    assert flags["trusted-ca-file"] == flags["peer-trusted-ca-file"] == str(pki.ca)
    assert flags["data-dir"] == str(layout.etcd_data)
    assert flags["initial-cluster"] == f"kuf-etcd={flags['initial-advertise-peer-urls']}"


def test_the_apiserver_authorizes_with_node_and_rbac_and_signs_service_account_tokens(
    setup: tuple[UpstreamBinaries, UpstreamPki, Layout],
) -> None:
    _, pki, layout = setup
    flags = _flags(_all(setup)["kube-apiserver"])
    assert flags["authorization-mode"] == "Node,RBAC"
    assert "NodeRestriction" in flags["enable-admission-plugins"].split(",")
    assert flags["client-ca-file"] == str(pki.ca)
    assert (flags["tls-cert-file"], flags["tls-private-key-file"]) == (str(pki.apiserver.cert), str(pki.apiserver.key))
    assert flags["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert flags["service-account-key-file"] == str(pki.service_account_pub)
    assert flags["service-account-signing-key-file"] == str(pki.service_account_key)
    assert flags["service-cluster-ip-range"] == "10.96.0.0/12"
    assert flags["etcd-servers"] == "https://127.0.0.1:40001"
    assert (flags["etcd-certfile"], flags["etcd-keyfile"]) == (
        str(pki.apiserver_etcd_client.cert),
        str(pki.apiserver_etcd_client.key),
    )
    assert flags["token-auth-file"] == str(layout.token_file)
    assert "insecure-port" not in flags and "anonymous-auth" not in flags  # upstream's defaults: anonymous is system:anonymous


def test_the_controller_manager_signs_tokens_with_the_same_key_and_uses_per_controller_accounts(
    setup: tuple[UpstreamBinaries, UpstreamPki, Layout],
) -> None:
    _, pki, layout = setup
    flags = _flags(_all(setup)["kube-controller-manager"])
    assert flags["service-account-private-key-file"] == str(pki.service_account_key)
    assert flags["root-ca-file"] == str(pki.ca)
    assert flags["use-service-account-credentials"] == "true"
    assert flags["cluster-cidr"] == "10.244.0.0/16"
    assert flags["kubeconfig"] == str(layout.kubeconfig("kube-controller-manager"))
    assert flags["allocate-node-cidrs"] == "false"  # the lab registers each node with its own pod CIDR


def test_kube_proxy_runs_inside_its_node_namespace_as_that_node(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> None:
    binaries, _, layout = setup
    argv = kube_proxy_argv(binaries, layout, "node-2", "kuf-node-2", "iptables")
    assert argv[:5] == ["ip", "netns", "exec", "kuf-node-2", str(binaries.kube_proxy)]
    flags = _flags(argv)
    assert flags["hostname-override"] == "node-2"
    assert flags["proxy-mode"] == "iptables"
    assert flags["kubeconfig"] == str(layout.kubeconfig("kube-proxy"))
    assert flags["cluster-cidr"] == "10.244.0.0/16"
    assert all(
        flags[f"conntrack-{k}"] == "0" for k in ("max-per-core", "min", "tcp-timeout-established", "tcp-timeout-close-wait")
    )


def test_every_file_the_control_plane_writes_is_inside_the_lab_directory(
    setup: tuple[UpstreamBinaries, UpstreamPki, Layout],
) -> None:
    _, _, layout = setup
    for name, argv in _all(setup).items():
        for value in _flags(argv).values():
            if value.startswith("/") and not value.startswith(str(BIN)):
                assert Path(value).is_relative_to(layout.directory), (name, value)


def test_lab_down_can_recognise_each_upstream_process_by_its_command_line(
    setup: tuple[UpstreamBinaries, UpstreamPki, Layout],
) -> None:
    argvs = _all(setup)
    markers = set(process_markers(setup[2]))
    for name, argv in argvs.items():
        assert markers & set(argv), f"{name}'s command line carries no marker `lab down` looks for"


def test_the_static_token_line_is_the_admin_in_system_masters() -> None:
    assert token_file_line("s3cret") == 's3cret,kubereach-lab-admin,kubereach-lab-admin,"system:masters"\n'


def test_the_kubeconfigs_load_in_the_official_client(setup: tuple[UpstreamBinaries, UpstreamPki, Layout]) -> None:
    _, pki, layout = setup
    paths = write_kubeconfigs(layout, api_url(PORTS), pki, "admin-token")
    assert set(paths) == {"admin", "kube-controller-manager", "kube-scheduler", "kube-proxy", "node-node-1", "node-node-2"}
    for who, path in paths.items():
        assert path.stat().st_mode & 0o077 == 0, who
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=str(path), client_configuration=configuration)
        assert configuration.host == "https://127.0.0.1:40003"
        assert Path(configuration.ssl_ca_cert).read_bytes() == pki.ca.read_bytes()
        if who == "admin":
            assert "Bearer admin-token" in configuration.api_key.values()
        else:
            assert configuration.cert_file and configuration.key_file, who
    node = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(paths["node-node-2"]), client_configuration=node)
    assert Path(node.cert_file).read_bytes() == pki.nodes["node-2"].cert.read_bytes()
