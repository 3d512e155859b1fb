"""The cluster DNS's upstream read from CoreDNS's Corefile (the kube-system/coredns ConfigMap)."""

from __future__ import annotations

from bot.cluster.corefile import forward_upstreams
from bot.cluster.errors import ClusterAccessDenied
from bot.cluster.lookups import dns_upstreams
from bot.cluster.resources import CONFIG_MAPS, KubeResource
from lab.objects import COREFILE

# The lab's copy of the Corefile kubeadm's template writes, and the shape EKS's CoreDNS add-on ships.
KUBEADM = COREFILE
EKS = """.:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""


def test_forwarding_to_the_pods_resolv_conf_names_no_address() -> None:
    assert forward_upstreams(KUBEADM) == ()
    assert forward_upstreams(EKS) == ()


def test_the_root_blocks_forward_addresses_in_every_spelling() -> None:
    corefile = """# site resolvers
example.org:53 {
    forward . 192.0.2.99
}
.:53 {
    kubernetes cluster.local
    forward . 8.8.8.8:53 dns://1.1.1.1 tls://[2001:db8::1]:853 /etc/resolv.conf {
       policy sequential
    }
}
"""
    assert forward_upstreams(corefile) == ("8.8.8.8", "1.1.1.1", "2001:db8::1")


def test_no_root_block_or_no_forward_is_unknown() -> None:
    assert forward_upstreams("example.org {\n forward . 192.0.2.99\n}\n") == ()
    assert forward_upstreams(".:53 {\n kubernetes cluster.local\n}\n") == ()
    assert forward_upstreams("") == ()


class Reader:
    """An ObjectReader with one ConfigMap, or one that refuses."""

    def __init__(self, corefile: str | None, *, denied: bool = False) -> None:
        self.corefile, self.denied = corefile, denied

    def list_objects(
        self, resource: KubeResource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, object]]:
        return []

    def get_object(self, resource: KubeResource, name: str, namespace: str | None = None) -> dict[str, object] | None:
        if self.denied:
            raise ClusterAccessDenied(
                'configmaps "coredns" is forbidden', verb="get", resource="configmaps", group="", namespace="kube-system"
            )
        assert (resource, name, namespace) == (CONFIG_MAPS, "coredns", "kube-system")
        return None if self.corefile is None else {"data": {"Corefile": self.corefile}}


def test_the_upstream_comes_from_kube_system_coredns_and_a_refusal_is_unknown_not_an_error() -> None:
    assert dns_upstreams(Reader(".:53 {\n forward . 203.0.113.53\n}\n")) == ("203.0.113.53",)
    assert dns_upstreams(Reader(None)) == ()
    assert dns_upstreams(Reader(KUBEADM, denied=True)) == ()
