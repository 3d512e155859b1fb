"""Which cgroup path the agent reports for a socket's owner, from the text of /proc/PID/cgroup."""

from __future__ import annotations

from nodeagent.checks.sockets import owner_cgroup


def test_a_pods_cgroup_is_preferred_in_whichever_hierarchy_names_it() -> None:
    assert owner_cgroup("4:memory:/kubepods/besteffort/podabc/123\n0::/\n") == "/kubepods/besteffort/podabc/123"
    systemd = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b.slice/cri-containerd-1.scope\n"
    assert owner_cgroup("1:name=systemd:/system.slice/x.service\n" + systemd) == systemd.strip()[3:]


def test_else_the_unified_path_then_the_first_path_that_is_not_the_root() -> None:
    assert owner_cgroup("0::/system.slice/node-exporter.service\n") == "/system.slice/node-exporter.service"
    assert owner_cgroup("4:memory:/job/1\n0::/\n") == "/job/1"
    assert owner_cgroup("0::/\n") == "/"
    assert owner_cgroup("") == "/"
