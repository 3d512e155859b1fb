"""Full reachability matrices for NetworkPolicy, one small cluster per scenario.

Each table was derived by hand from the Kubernetes NetworkPolicy semantics (not by running the
evaluator): X = allowed, . = denied; rows are sources, columns destinations, one table per
protocol/port. The flow needs the source's egress AND the destination's ingress.
"""

from __future__ import annotations

import pytest

from tests.unit.policy_cases.matrix import (
    Scenario,
    mismatches,
    namespace,
    netpol,
    pod,
    xyz_cluster,
)

ALL_OPEN_XYZ_80 = """
TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a      X   X   X   X   X   X   X   X   X
x/b      X   X   X   X   X   X   X   X   X
x/c      X   X   X   X   X   X   X   X   X
y/a      X   X   X   X   X   X   X   X   X
y/b      X   X   X   X   X   X   X   X   X
y/c      X   X   X   X   X   X   X   X   X
z/a      X   X   X   X   X   X   X   X   X
z/b      X   X   X   X   X   X   X   X   X
z/c      X   X   X   X   X   X   X   X   X
"""


def labels_cluster() -> list[dict[str, object]]:
    """prod {env: prod}, dev {env: dev}, sandbox (no env); pods with app/tier/pci labels."""
    ports: list[tuple[str | None, int, str]] = [("http", 80, "TCP")]
    return [
        namespace("prod", env="prod"),
        namespace("dev", env="dev"),
        namespace("sandbox"),
        pod("prod", "web", "10.1.0.1", {"app": "web", "tier": "front"}, ports),
        pod("prod", "db", "10.1.0.2", {"app": "db", "tier": "back", "pci": "true"}, ports),
        pod("dev", "web", "10.1.1.1", {"app": "web", "tier": "front"}, ports),
        pod("dev", "db", "10.1.1.2", {"app": "db"}, ports),
        pod("sandbox", "tool", "10.1.2.1", {"app": "tool"}, ports),
    ]


def named_port_cluster() -> list[dict[str, object]]:
    """svc: client (no ports), old (http=TCP/8080), new (http=TCP/9090, metrics=TCP/8080)."""
    return [
        namespace("svc"),
        pod("svc", "client", "10.2.0.1", {"app": "client"}, []),
        pod("svc", "old", "10.2.0.2", {"app": "api"}, [("http", 8080, "TCP")]),
        pod("svc", "new", "10.2.0.3", {"app": "api"}, [("http", 9090, "TCP"), ("metrics", 8080, "TCP")]),
    ]


def shop_cluster() -> list[dict[str, object]]:
    """The kubereach lab's shop: frontend and api in shop, ledger in payments, prometheus, coredns."""
    return [
        namespace("shop", team="shop"),
        namespace("payments", team="payments", pci="true"),
        namespace("monitoring"),
        namespace("kube-system"),
        pod("shop", "frontend-6c9f8", "10.244.1.10", {"app": "frontend"}, [("http", 8080, "TCP")]),
        pod("shop", "api-5d7b9", "10.244.2.11", {"app": "api"}, [("http", 8080, "TCP")]),
        pod("payments", "ledger-7f4c2", "10.244.1.12", {"app": "ledger"}, [("https", 8443, "TCP")]),
        pod("monitoring", "prometheus-0", "10.244.2.13", {"app": "prometheus"}, [("web", 9090, "TCP")]),
        pod(
            "kube-system",
            "coredns-0",
            "10.244.1.2",
            {"k8s-app": "kube-dns"},
            [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
        ),
    ]


# The lab's shop: only shop's api may reach the ledger, and only on TCP/8443.
SHOP_TCP_8443 = """
TCP/8443                 shop/frontend-6c9f8 shop/api-5d7b9 payments/ledger-7f4c2 monitoring/prometheus-0 kube-system/coredns-0
shop/frontend-6c9f8               X                X                  .                      X                      X
shop/api-5d7b9                    X                X                  X                      X                      X
payments/ledger-7f4c2             X                X                  .                      X                      X
monitoring/prometheus-0           X                X                  .                      X                      X
kube-system/coredns-0             X                X                  .                      X                      X
"""

SHOP_TCP_8080 = """
TCP/8080                 shop/frontend-6c9f8 shop/api-5d7b9 payments/ledger-7f4c2 monitoring/prometheus-0 kube-system/coredns-0
shop/frontend-6c9f8               X                X                  .                      X                      X
shop/api-5d7b9                    X                X                  .                      X                      X
payments/ledger-7f4c2             X                X                  .                      X                      X
monitoring/prometheus-0           X                X                  .                      X                      X
kube-system/coredns-0             X                X                  .                      X                      X
"""


SCENARIOS = [
    Scenario("no-policies-allow-everything", xyz_cluster(), (ALL_OPEN_XYZ_80,)),
    Scenario(
        "default-deny-ingress-in-x",
        [*xyz_cluster(), netpol("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   .   .   X   X   X   X   X   X
            x/b      .   .   .   X   X   X   X   X   X
            x/c      .   .   .   X   X   X   X   X   X
            y/a      .   .   .   X   X   X   X   X   X
            y/b      .   .   .   X   X   X   X   X   X
            y/c      .   .   .   X   X   X   X   X   X
            z/a      .   .   .   X   X   X   X   X   X
            z/b      .   .   .   X   X   X   X   X   X
            z/c      .   .   .   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "default-deny-egress-in-x",
        [*xyz_cluster(), netpol("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   .   .   .   .   .   .   .   .
            x/b      .   .   .   .   .   .   .   .   .
            x/c      .   .   .   .   .   .   .   .   .
            y/a      X   X   X   X   X   X   X   X   X
            y/b      X   X   X   X   X   X   X   X   X
            y/c      X   X   X   X   X   X   X   X   X
            z/a      X   X   X   X   X   X   X   X   X
            z/b      X   X   X   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "allow-all-ingress-rule-beside-default-deny",
        [
            *xyz_cluster(),
            netpol("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            netpol("x", "allow-all-to-a", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{}]}),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   .   .   X   X   X   X   X   X
            x/b      X   .   .   X   X   X   X   X   X
            x/c      X   .   .   X   X   X   X   X   X
            y/a      X   .   .   X   X   X   X   X   X
            y/b      X   .   .   X   X   X   X   X   X
            y/c      X   .   .   X   X   X   X   X   X
            z/a      X   .   .   X   X   X   X   X   X
            z/b      X   .   .   X   X   X   X   X   X
            z/c      X   .   .   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "empty-ingress-list-without-policy-types-denies-all-ingress",
        [*xyz_cluster(), netpol("x", "deny-a", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": []})],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   X   X   X   X   X   X   X
            x/b      .   X   X   X   X   X   X   X   X
            x/c      .   X   X   X   X   X   X   X   X
            y/a      .   X   X   X   X   X   X   X   X
            y/b      .   X   X   X   X   X   X   X   X
            y/c      .   X   X   X   X   X   X   X   X
            z/a      .   X   X   X   X   X   X   X   X
            z/b      .   X   X   X   X   X   X   X   X
            z/c      .   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # No policyTypes and an egress section: Ingress (no rules: deny all) AND Egress.
        "policy-types-default-with-egress-rules-isolates-both-directions",
        [
            *xyz_cluster(),
            netpol(
                "y",
                "b-egress-in-namespace",
                {"podSelector": {"matchLabels": {"pod": "b"}}, "egress": [{"to": [{"podSelector": {}}]}]},
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   .   X   X   X   X
            x/b      X   X   X   X   .   X   X   X   X
            x/c      X   X   X   X   .   X   X   X   X
            y/a      X   X   X   X   .   X   X   X   X
            y/b      .   .   .   X   .   X   .   .   .
            y/c      X   X   X   X   .   X   X   X   X
            z/a      X   X   X   X   .   X   X   X   X
            z/b      X   X   X   X   .   X   X   X   X
            z/c      X   X   X   X   .   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # `egress: []` is no egress section for the default: the policy isolates ingress only.
        "policy-types-default-with-empty-egress-list-is-ingress-only",
        [*xyz_cluster(), netpol("z", "c-locked", {"podSelector": {"matchLabels": {"pod": "c"}}, "egress": []})],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   X   X   .
            x/b      X   X   X   X   X   X   X   X   .
            x/c      X   X   X   X   X   X   X   X   .
            y/a      X   X   X   X   X   X   X   X   .
            y/b      X   X   X   X   X   X   X   X   .
            y/c      X   X   X   X   X   X   X   X   .
            z/a      X   X   X   X   X   X   X   X   .
            z/b      X   X   X   X   X   X   X   X   .
            z/c      X   X   X   X   X   X   X   X   .
            """,
        ),
    ),
    Scenario(
        "namespace-selector-only-admits-every-pod-of-matching-namespaces",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-from-y",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   X   X   X   X   X   X   X
            x/b      .   X   X   X   X   X   X   X   X
            x/c      .   X   X   X   X   X   X   X   X
            y/a      X   X   X   X   X   X   X   X   X
            y/b      X   X   X   X   X   X   X   X   X
            y/c      X   X   X   X   X   X   X   X   X
            z/a      .   X   X   X   X   X   X   X   X
            z/b      .   X   X   X   X   X   X   X   X
            z/c      .   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "pod-selector-only-admits-matching-pods-of-the-policy-namespace-only",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-from-b",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   X   X   X   X   X   X   X
            x/b      X   X   X   X   X   X   X   X   X
            x/c      .   X   X   X   X   X   X   X   X
            y/a      .   X   X   X   X   X   X   X   X
            y/b      .   X   X   X   X   X   X   X   X
            y/c      .   X   X   X   X   X   X   X   X
            z/a      .   X   X   X   X   X   X   X   X
            z/b      .   X   X   X   X   X   X   X   X
            z/c      .   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "both-selectors-in-one-peer-are-anded",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-from-y-b",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchLabels": {"ns": "y"}},
                                    "podSelector": {"matchLabels": {"pod": "b"}},
                                }
                            ]
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   X   X   X   X   X   X   X
            x/b      .   X   X   X   X   X   X   X   X
            x/c      .   X   X   X   X   X   X   X   X
            y/a      .   X   X   X   X   X   X   X   X
            y/b      X   X   X   X   X   X   X   X   X
            y/c      .   X   X   X   X   X   X   X   X
            z/a      .   X   X   X   X   X   X   X   X
            z/b      .   X   X   X   X   X   X   X   X
            z/c      .   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "separate-peers-are-ored",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-from-y-or-b",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                {"podSelector": {"matchLabels": {"pod": "b"}}},
                            ]
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   X   X   X   X   X   X   X
            x/b      X   X   X   X   X   X   X   X   X
            x/c      .   X   X   X   X   X   X   X   X
            y/a      X   X   X   X   X   X   X   X   X
            y/b      X   X   X   X   X   X   X   X   X
            y/c      X   X   X   X   X   X   X   X   X
            z/a      .   X   X   X   X   X   X   X   X
            z/b      .   X   X   X   X   X   X   X   X
            z/c      .   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "match-expressions-in",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "from-a-or-c-anywhere",
                {
                    "podSelector": {},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {},
                                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "c"]}]},
                                }
                            ]
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   X   X   X
            x/b      .   .   .   X   X   X   X   X   X
            x/c      X   X   X   X   X   X   X   X   X
            y/a      X   X   X   X   X   X   X   X   X
            y/b      .   .   .   X   X   X   X   X   X
            y/c      X   X   X   X   X   X   X   X   X
            z/a      X   X   X   X   X   X   X   X   X
            z/b      .   .   .   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "match-expressions-not-in",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "not-a-from-not-y",
                {
                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]},
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}}
                            ]
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   X   X   X
            x/b      X   X   X   X   X   X   X   X   X
            x/c      X   X   X   X   X   X   X   X   X
            y/a      X   .   .   X   X   X   X   X   X
            y/b      X   .   .   X   X   X   X   X   X
            y/c      X   .   .   X   X   X   X   X   X
            z/a      X   X   X   X   X   X   X   X   X
            z/b      X   X   X   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "match-expressions-exists-and-does-not-exist",
        [
            *labels_cluster(),
            netpol(
                "prod",
                "pci-from-tiered-pods-of-labelled-namespaces",
                {
                    "podSelector": {"matchExpressions": [{"key": "pci", "operator": "Exists"}]},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]},
                                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                                }
                            ]
                        }
                    ],
                },
            ),
            netpol(
                "dev",
                "untiered-from-web",
                {
                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
                    "ingress": [
                        {"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}]}
                    ],
                },
            ),
        ],
        (
            """
            TCP/80        prod/web prod/db dev/web dev/db sandbox/tool
            prod/web         X        X       X      .        X
            prod/db          X        X       X      .        X
            dev/web          X        X       X      X        X
            dev/db           X        .       X      .        X
            sandbox/tool     X        .       X      .        X
            """,
        ),
    ),
    Scenario(
        # NotIn also matches objects without the key: sandbox has no env, sandbox/tool no tier.
        "match-expressions-not-in-matches-missing-key",
        [
            *labels_cluster(),
            netpol(
                "prod",
                "egress-to-non-dev-non-back",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]
                                    },
                                    "podSelector": {
                                        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}]
                                    },
                                },
                            ]
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80        prod/web prod/db dev/web dev/db sandbox/tool
            prod/web         X        .       .      .        X
            prod/db          X        .       .      .        X
            dev/web          X        X       X      X        X
            dev/db           X        X       X      X        X
            sandbox/tool     X        X       X      X        X
            """,
        ),
    ),
    Scenario(
        # Egress: x/a may reach 10.0.0.0/16 but not y's 10.0.2.0/24; ingress: z/c admits x's /24 but x/b.
        "ip-block-with-except-matches-pod-ips",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-egress-cidr",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}],
                },
            ),
            netpol(
                "z",
                "c-ingress-cidr",
                {
                    "podSelector": {"matchLabels": {"pod": "c"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.2/32"]}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   .   .   .   X   X   X
            x/b      X   X   X   X   X   X   X   X   .
            x/c      X   X   X   X   X   X   X   X   X
            y/a      X   X   X   X   X   X   X   X   .
            y/b      X   X   X   X   X   X   X   X   .
            y/c      X   X   X   X   X   X   X   X   .
            z/a      X   X   X   X   X   X   X   X   .
            z/b      X   X   X   X   X   X   X   X   .
            z/c      X   X   X   X   X   X   X   X   .
            """,
        ),
    ),
    Scenario(
        # `http` is TCP/8080 on old but TCP/9090 on new (where 8080 is `metrics`).
        "ingress-named-port-resolves-per-destination-pod",
        [
            *named_port_cluster(),
            netpol(
                "svc",
                "api-http",
                {
                    "podSelector": {"matchLabels": {"app": "api"}},
                    "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}],
                },
            ),
        ],
        (
            """
            TCP/8080    svc/client svc/old svc/new
            svc/client      X         X       .
            svc/old         X         X       .
            svc/new         X         X       .
            """,
            """
            TCP/9090    svc/client svc/old svc/new
            svc/client      X         .       X
            svc/old         X         .       X
            svc/new         X         .       X
            """,
        ),
    ),
    Scenario(
        # An egress named port is looked up on the destination pod too.
        "egress-named-port-resolves-on-the-destination",
        [
            *named_port_cluster(),
            netpol(
                "svc",
                "client-egress-http",
                {
                    "podSelector": {"matchLabels": {"app": "client"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": "http"}]}],
                },
            ),
        ],
        (
            """
            TCP/8080    svc/client svc/old svc/new
            svc/client      .         X       .
            svc/old         X         X       X
            svc/new         X         X       X
            """,
            """
            TCP/9090    svc/client svc/old svc/new
            svc/client      .         .       X
            svc/old         X         X       X
            svc/new         X         X       X
            """,
        ),
    ),
    Scenario(
        "end-port-range-is-inclusive",
        [
            namespace("r"),
            namespace("s"),
            pod("r", "a", "10.3.0.1", {"pod": "a"}, []),
            pod("r", "b", "10.3.0.2", {"pod": "b"}, []),
            pod("s", "a", "10.3.1.1", {"pod": "a"}, []),
            netpol(
                "r",
                "a-range",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8000, "endPort": 8080}]}],
                },
            ),
        ],
        (
            """
            TCP/7999  r/a r/b s/a
            r/a        .   X   X
            r/b        .   X   X
            s/a        .   X   X
            """,
            """
            TCP/8000  r/a r/b s/a
            r/a        X   X   X
            r/b        X   X   X
            s/a        X   X   X
            """,
            """
            TCP/8080  r/a r/b s/a
            r/a        X   X   X
            r/b        X   X   X
            s/a        X   X   X
            """,
            """
            TCP/8081  r/a r/b s/a
            r/a        .   X   X
            r/b        .   X   X
            s/a        .   X   X
            """,
            """
            UDP/8000  r/a r/b s/a
            r/a        .   X   X
            r/b        .   X   X
            s/a        .   X   X
            """,
        ),
    ),
    Scenario(
        # A port without protocol is TCP: app's first egress rule opens TCP/53 only.
        "protocol-udp-versus-default-tcp",
        [
            namespace("dns"),
            namespace("app"),
            pod("dns", "coredns", "10.4.0.10", {"k8s-app": "dns"}, [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
            pod("app", "web", "10.4.1.1", {"app": "web"}, []),
            pod("app", "worker", "10.4.1.2", {"app": "worker"}, []),
            netpol(
                "dns",
                "dns-udp-only",
                {"podSelector": {}, "ingress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]},
            ),
            netpol(
                "app",
                "egress-dns",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"ports": [{"port": 53}]},
                        {
                            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}}}],
                            "ports": [{"port": 53, "protocol": "UDP"}],
                        },
                    ],
                },
            ),
        ],
        (
            """
            UDP/53       dns/coredns app/web app/worker
            dns/coredns       X         X        X
            app/web           X         .        .
            app/worker        X         .        .
            """,
            """
            TCP/53       dns/coredns app/web app/worker
            dns/coredns       .         X        X
            app/web           .         X        X
            app/worker        .         X        X
            """,
            """
            SCTP/53      dns/coredns app/web app/worker
            dns/coredns       .         X        X
            app/web           .         .        .
            app/worker        .         .        .
            """,
        ),
    ),
    Scenario(
        # y/a: p1 opens 80 from y/b; p2 (all of y) opens 81 from z. Rules of all selecting policies add up.
        "multiple-policies-union",
        [
            *xyz_cluster(),
            netpol(
                "y",
                "p1-a-80-from-b",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}],
                },
            ),
            netpol(
                "y",
                "p2-all-81-from-z",
                {
                    "podSelector": {},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}], "ports": [{"port": 81}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   .   .   .   X   X   X
            x/b      X   X   X   .   .   .   X   X   X
            x/c      X   X   X   .   .   .   X   X   X
            y/a      X   X   X   .   .   .   X   X   X
            y/b      X   X   X   X   .   .   X   X   X
            y/c      X   X   X   .   .   .   X   X   X
            z/a      X   X   X   .   .   .   X   X   X
            z/b      X   X   X   .   .   .   X   X   X
            z/c      X   X   X   .   .   .   X   X   X
            """,
            """
            TCP/81  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   .   .   .   X   X   X
            x/b      X   X   X   .   .   .   X   X   X
            x/c      X   X   X   .   .   .   X   X   X
            y/a      X   X   X   .   .   .   X   X   X
            y/b      X   X   X   .   .   .   X   X   X
            y/c      X   X   X   .   .   .   X   X   X
            z/a      X   X   X   X   X   X   X   X   X
            z/b      X   X   X   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # x/a egress only to y (y/b's ingress then denies x/a); y/b admits only z; z/a egress only to x.
        "egress-allowed-ingress-denied-and-vice-versa",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-egress-to-y",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
                },
            ),
            netpol(
                "y",
                "b-ingress-from-z",
                {
                    "podSelector": {"matchLabels": {"pod": "b"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}],
                },
            ),
            netpol(
                "z",
                "a-egress-to-x",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   .   .   X   .   X   .   .   .
            x/b      X   X   X   X   .   X   X   X   X
            x/c      X   X   X   X   .   X   X   X   X
            y/a      X   X   X   X   .   X   X   X   X
            y/b      X   X   X   X   .   X   X   X   X
            y/c      X   X   X   X   .   X   X   X   X
            z/a      X   X   X   .   .   .   .   .   .
            z/b      X   X   X   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        "policy-in-another-namespace-does-not-apply",
        [
            *xyz_cluster(),
            netpol(
                "z",
                "a-isolated",
                {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"]},
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   .   X   X
            x/b      X   X   X   X   X   X   .   X   X
            x/c      X   X   X   X   X   X   .   X   X
            y/a      X   X   X   X   X   X   .   X   X
            y/b      X   X   X   X   X   X   .   X   X
            y/c      X   X   X   X   X   X   .   X   X
            z/a      .   .   .   .   .   .   .   .   .
            z/b      X   X   X   X   X   X   .   X   X
            z/c      X   X   X   X   X   X   .   X   X
            """,
        ),
    ),
    Scenario(
        # podSelector {} selects every pod of y, and as a peer means every pod of y only.
        "empty-pod-selector-selects-all-pods-in-namespace",
        [
            *xyz_cluster(),
            netpol("y", "within-y", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   .   .   .   X   X   X
            x/b      X   X   X   .   .   .   X   X   X
            x/c      X   X   X   .   .   .   X   X   X
            y/a      X   X   X   X   X   X   X   X   X
            y/b      X   X   X   X   X   X   X   X   X
            y/c      X   X   X   X   X   X   X   X   X
            z/a      X   X   X   .   .   .   X   X   X
            z/b      X   X   X   .   .   .   X   X   X
            z/c      X   X   X   .   .   .   X   X   X
            """,
        ),
    ),
    Scenario(
        "empty-namespace-selector-admits-all-namespaces-on-the-listed-port",
        [
            *xyz_cluster(),
            netpol(
                "y",
                "all-on-81",
                {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 81}]}]},
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   .   .   .   X   X   X
            x/b      X   X   X   .   .   .   X   X   X
            x/c      X   X   X   .   .   .   X   X   X
            y/a      X   X   X   .   .   .   X   X   X
            y/b      X   X   X   .   .   .   X   X   X
            y/c      X   X   X   .   .   .   X   X   X
            z/a      X   X   X   .   .   .   X   X   X
            z/b      X   X   X   .   .   .   X   X   X
            z/c      X   X   X   .   .   .   X   X   X
            """,
            ALL_OPEN_XYZ_80.replace("TCP/80", "TCP/81"),
        ),
    ),
    Scenario(
        "implicit-namespace-name-label",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "b-from-z",
                {
                    "podSelector": {"matchLabels": {"pod": "b"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   .   X   X   X   X   X   X   X
            x/b      X   .   X   X   X   X   X   X   X
            x/c      X   .   X   X   X   X   X   X   X
            y/a      X   .   X   X   X   X   X   X   X
            y/b      X   .   X   X   X   X   X   X   X
            y/c      X   .   X   X   X   X   X   X   X
            z/a      X   X   X   X   X   X   X   X   X
            z/b      X   X   X   X   X   X   X   X   X
            z/c      X   X   X   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # One rule: peers AND ports; the ports list is TCP/80 or UDP/81.
        "rule-needs-peer-and-port",
        [
            *xyz_cluster(),
            netpol(
                "x",
                "c-from-a-80-tcp-81-udp",
                {
                    "podSelector": {"matchLabels": {"pod": "c"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                            "ports": [{"port": 80}, {"port": 81, "protocol": "UDP"}],
                        }
                    ],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   X   X   X
            x/b      X   X   .   X   X   X   X   X   X
            x/c      X   X   .   X   X   X   X   X   X
            y/a      X   X   .   X   X   X   X   X   X
            y/b      X   X   .   X   X   X   X   X   X
            y/c      X   X   .   X   X   X   X   X   X
            z/a      X   X   .   X   X   X   X   X   X
            z/b      X   X   .   X   X   X   X   X   X
            z/c      X   X   .   X   X   X   X   X   X
            """,
            """
            UDP/81  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   X   X   X   X   X   X   X
            x/b      X   X   .   X   X   X   X   X   X
            x/c      X   X   .   X   X   X   X   X   X
            y/a      X   X   .   X   X   X   X   X   X
            y/b      X   X   .   X   X   X   X   X   X
            y/c      X   X   .   X   X   X   X   X   X
            z/a      X   X   .   X   X   X   X   X   X
            z/b      X   X   .   X   X   X   X   X   X
            z/c      X   X   .   X   X   X   X   X   X
            """,
            """
            UDP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      X   X   .   X   X   X   X   X   X
            x/b      X   X   .   X   X   X   X   X   X
            x/c      X   X   .   X   X   X   X   X   X
            y/a      X   X   .   X   X   X   X   X   X
            y/b      X   X   .   X   X   X   X   X   X
            y/c      X   X   .   X   X   X   X   X   X
            z/a      X   X   .   X   X   X   X   X   X
            z/b      X   X   .   X   X   X   X   X   X
            z/c      X   X   .   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # Default deny both ways in x, then a pair of policies opening x/a -> x/b only.
        "default-deny-both-directions-with-one-opened-pair",
        [
            *xyz_cluster(),
            netpol("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            netpol(
                "x",
                "a-egress-to-b",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                },
            ),
            netpol(
                "x",
                "b-ingress-from-a",
                {
                    "podSelector": {"matchLabels": {"pod": "b"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}],
                },
            ),
        ],
        (
            """
            TCP/80  x/a x/b x/c y/a y/b y/c z/a z/b z/c
            x/a      .   X   .   .   .   .   .   .   .
            x/b      .   .   .   .   .   .   .   .   .
            x/c      .   .   .   .   .   .   .   .   .
            y/a      .   .   .   X   X   X   X   X   X
            y/b      .   .   .   X   X   X   X   X   X
            y/c      .   .   .   X   X   X   X   X   X
            z/a      .   .   .   X   X   X   X   X   X
            z/b      .   .   .   X   X   X   X   X   X
            z/c      .   .   .   X   X   X   X   X   X
            """,
        ),
    ),
    Scenario(
        # The lab's shop: only shop's api may reach the ledger, and only on TCP/8443.
        "lab-shop-ledger-ingress",
        [
            *shop_cluster(),
            netpol(
                "payments",
                "ledger-ingress",
                {
                    "podSelector": {"matchLabels": {"app": "ledger"}},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchLabels": {"team": "shop"}},
                                    "podSelector": {"matchLabels": {"app": "api"}},
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": 8443}],
                        }
                    ],
                },
            ),
        ],
        (
            SHOP_TCP_8443,
            SHOP_TCP_8080,
        ),
    ),
]


def test_there_are_at_least_twenty_five_scenarios_with_distinct_names() -> None:
    names = [scenario.name for scenario in SCENARIOS]
    assert len(names) >= 25
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_reachability_matrix_matches_truth_table(scenario: Scenario) -> None:
    problems = mismatches(scenario)
    assert not problems, "\n".join(problems)
