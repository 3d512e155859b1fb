"""Faults on the lab on real binaries: pod faults find the pods the lab's kubelet built for the
controllers' pods, and faults that drive the lab's own kube-proxy say what to do by hand instead."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.faults import FaultContext, inject
from lab.plan import LabOptions, make_plan
from lab.spec import load_spec
from lab.state import STATE_ROOT, LabState
from lab.upstream.placement import pod_plan


def _state(prefix: str, directory: str = "/nonexistent") -> LabState:
    return LabState(
        prefix=prefix, nodes=2, cni="flannel-vxlan", proxy="iptables", directory=directory, spec_file="", kubernetes="v1.36.2"
    )


def test_a_pod_fault_finds_the_namespace_and_veth_the_kubelet_built() -> None:
    plan = make_plan(load_spec(), LabOptions(prefix="kuft", nodes=2))
    pod = {
        "metadata": {
            "namespace": "shop", "name": "frontend-6d5f8b9c7-k2m4p", "uid": "u1",
            "labels": {"app": "frontend", "pod-template-hash": "6d5f8b9c7"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "frontend-6d5f8b9c7", "controller": True}],
        },
        "spec": {"nodeName": "node-2", "containers": [{"name": "frontend", "ports": [{"containerPort": 8080}]}]},
        "status": {"podIP": "10.244.2.4"},
    }  # fmt: skip
    found = FaultContext(_state("kuft"), plan, api=None).pod_plan(pod)  # type: ignore[arg-type]
    assert found == pod_plan(plan, pod, plan.node("node-2"), "10.244.2.4")
    assert (found.netns, found.ip, found.node) == ("kuft-pod-shop-frontend-6d5f8b9c7-k2m4p", "10.244.2.4", "node-2")


@pytest.mark.lab
@pytest.mark.parametrize("name", ["kube-proxy-stale", "kube-proxy-rules-missing"])
def test_faults_of_the_labs_own_kube_proxy_are_refused_with_what_to_do_by_hand(name: str) -> None:
    prefix = f"kf{os.getpid() % 10000:04d}"
    directory = STATE_ROOT / prefix
    directory.mkdir(parents=True, mode=0o700)
    try:
        state = _state(prefix, str(directory))
        state.processes = {"kube-proxy/node-1": 4242, "kube-proxy/node-2": 4243, "etcd": 1}
        (directory / "state.json").write_text(json.dumps(state.__dict__))
        with pytest.raises(LabError) as caught:
            inject(prefix, name)
        assert caught.value.exit_code == 2
        assert "this lab runs the real one (Kubernetes v1.36.2)" in caught.value.message
        assert (
            caught.value.hint is not None
            and "kill -STOP PID (kube-proxy/node-1=4242, kube-proxy/node-2=4243)" in caught.value.hint.replace("`", "")
        )
        assert json.loads((directory / "state.json").read_text())["faults"] == [], "nothing was recorded"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert not Path(directory).exists()
