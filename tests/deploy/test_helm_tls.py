"""The chart's mTLS material works: per-node agent identities, checked by the bot's real fleet client.

The chart renders its CAs and the bot's certificate (Helm's genCA / genSignedCert); the agent pod's
init container command, exactly as rendered, mints the node's certificate; the real agent server
serves with it and the rendered client CA, and the bot's real `Fleet` dials it with the rendered
bot certificate and the agent CA, checking the name `kubereach-agent.<node>`. Everything listens
on 127.0.0.1 with a kernel-chosen port.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bot.fleet.client import AgentOutcome, Fleet
from bot.settings import AgentSettings as BotAgentSettings
from bot.settings import AgentTls
from kubereach.agent.v1 import agent_pb2 as pb
from nodeagent.__main__ import parse_args, settings_from
from tests.certs import dns_names, ip_names, key_pem, load_cert, make_ca, usages
from tests.deploy.chart import FULLNAME, REPO, containers, find, render
from tests.unit.agent_support import running_agent

SCRIPT = REPO / "deploy" / "docker" / "agent_identity.py"
IMAGE_SCRIPT = "/usr/local/lib/kubereach/agent_identity.py"
TCP_PROBES = {"agent": {"probes": {"mode": "tcp"}}}


def _identity_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("krd_agent_identity", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


identity = _identity_module()


@dataclass(frozen=True)
class Install:
    """One rendered install's TLS Secrets written to disk where its pods would mount them."""

    objects: list[dict[str, Any]]
    root: Path

    def mounted(self, pod_path: str) -> Path:
        """Where a path inside a pod lives in this test's directory."""
        return self.root / pod_path.lstrip("/")


def _write_secret(objects: list[dict[str, Any]], name: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for key, encoded in find(objects, "Secret", name)["data"].items():
        (directory / key).write_bytes(base64.b64decode(encoded))


def _install(root: Path) -> Install:
    objects = render(TCP_PROBES)
    install = Install(objects, root)
    _write_secret(objects, f"{FULLNAME}-agent-ca", install.mounted("/etc/kubereach/agent-ca"))
    _write_secret(objects, f"{FULLNAME}-client-ca", install.mounted("/etc/kubereach/client-ca"))
    _write_secret(objects, f"{FULLNAME}-bot-tls", install.mounted("/etc/kubereach/bot-tls"))
    return install


def _in_test_dir(install: Install, argument: str) -> str:
    for prefix in ("/etc/kubereach/", "/run/kubereach/"):
        if argument.startswith(prefix):
            return str(install.mounted(argument))
    return argument


def mint_as_the_init_container_does(install: Install, node: str) -> subprocess.CompletedProcess[str]:
    """Run the init container's rendered command with paths moved under the test directory."""
    agent = find(install.objects, "DaemonSet", f"{FULLNAME}-agent")
    (init,) = containers(agent, init=True)
    command = [*init["command"], *init["args"]]
    assert command[:2] == ["python", IMAGE_SCRIPT]
    argv = [sys.executable, str(SCRIPT)] + [_in_test_dir(install, a.replace("$(NODE_NAME)", node)) for a in command[2:]]
    install.mounted("/run/kubereach/tls").mkdir(parents=True, exist_ok=True)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def agent_settings_as_rendered(install: Install, node: str) -> Any:
    """The agent's settings from its rendered command line, listening on 127.0.0.1:0 instead of the node's port."""
    agent = find(install.objects, "DaemonSet", f"{FULLNAME}-agent")
    (main,) = containers(agent)
    args = [_in_test_dir(install, a.replace("$(NODE_NAME)", node)) for a in main["args"]]
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    return settings_from(parse_args(args))


def bot_fleet_settings(install: Install) -> BotAgentSettings:
    """The bot's agent settings with the files its pod mounts (paths as the chart sets them)."""
    return BotAgentSettings(
        tls=AgentTls(
            ca=install.mounted("/etc/kubereach/agent-ca/ca.crt"),
            cert=install.mounted("/etc/kubereach/bot-tls/tls.crt"),
            key=install.mounted("/etc/kubereach/bot-tls/tls.key"),
        ),
        call_timeout_s=5.0,
    )


def call_locate_pod(settings: BotAgentSettings, node: str, address: str) -> AgentOutcome:
    """One LocatePod call with an invalid IP: the agent answers INVALID_ARGUMENT only after mTLS succeeded."""

    async def call() -> AgentOutcome:
        fleet = Fleet({node: address}, settings)
        try:
            return await fleet.call(node, "LocatePod", pb.LocatePodRequest(pod_ip="not-an-ip"))
        finally:
            await fleet.close()

    return asyncio.run(call())


@pytest.fixture
def install(tmp_path: Path) -> Install:
    return _install(tmp_path / "krd-install")


@pytest.fixture
def node_1_agent(install: Install) -> Iterator[int]:
    done = mint_as_the_init_container_does(install, "node-1")
    assert done.returncode == 0, done.stderr
    with running_agent(agent_settings_as_rendered(install, "node-1")) as agent:
        yield agent.port


# ------------------------------------------------------------------------------ end to end


def test_bot_reaches_the_agent_of_the_node_it_means(install: Install, node_1_agent: int) -> None:
    outcome = call_locate_pod(bot_fleet_settings(install), "node-1", f"127.0.0.1:{node_1_agent}")
    assert outcome.error_kind == "invalid", outcome.error
    assert "pod_ip" in (outcome.error or "")


def test_bot_refuses_an_agent_whose_certificate_names_another_node(install: Install, node_1_agent: int) -> None:
    outcome = call_locate_pod(bot_fleet_settings(install), "node-2", f"127.0.0.1:{node_1_agent}")
    assert not outcome.ok and outcome.error_kind == "unreachable"


def test_agent_refuses_a_bot_from_another_install(install: Install, node_1_agent: int, tmp_path: Path) -> None:
    other = _install(tmp_path / "krd-other-install")
    settings = bot_fleet_settings(other).model_copy(
        update={
            "tls": AgentTls(
                ca=install.mounted("/etc/kubereach/agent-ca/ca.crt"),
                cert=other.mounted("/etc/kubereach/bot-tls/tls.crt"),
                key=other.mounted("/etc/kubereach/bot-tls/tls.key"),
            )
        }
    )
    outcome = call_locate_pod(settings, "node-1", f"127.0.0.1:{node_1_agent}")
    assert not outcome.ok and outcome.error_kind == "unreachable"


def test_bot_refuses_an_agent_certificate_from_another_install(install: Install, tmp_path: Path) -> None:
    other = _install(tmp_path / "krd-other-install")
    done = mint_as_the_init_container_does(other, "node-1")
    assert done.returncode == 0, done.stderr
    settings = agent_settings_as_rendered(other, "node-1").model_copy(
        update={"tls_client_ca": install.mounted("/etc/kubereach/client-ca/ca.crt")}
    )
    with running_agent(settings) as agent:
        outcome = call_locate_pod(bot_fleet_settings(install), "node-1", f"127.0.0.1:{agent.port}")
    assert not outcome.ok and outcome.error_kind == "unreachable"


# ---------------------------------------------------------------------------- the minted certificate


def test_minted_certificate_names_only_the_node_and_serves_only(install: Install) -> None:
    done = mint_as_the_init_container_does(install, "ip-10-0-1-7.eu-west-1.compute.internal")
    assert done.returncode == 0, done.stderr
    out = install.mounted("/run/kubereach/tls")
    cert = load_cert(out / "tls.crt")
    assert dns_names(cert) == ["kubereach-agent.ip-10-0-1-7.eu-west-1.compute.internal"]
    assert ip_names(cert) == []
    assert usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ca = load_cert(install.mounted("/etc/kubereach/agent-ca/tls.crt"))
    cert.verify_directly_issued_by(ca)
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600


def _ec_ca(days: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed EC CA as cert-manager makes them (PKCS#8 key)."""
    _, key, cert = make_ca("krd test agent CA", days=days, backdate=dt.timedelta(hours=1), key_usage=False)
    return cert, key


def test_minted_certificate_never_outlives_the_ca() -> None:
    ca, key = _ec_ca(days=3)
    minted = identity.mint("node-1", ca, key, days=90)
    cert = load_cert(minted.certificate)
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_an_expired_ca_is_refused() -> None:
    ca, key = _ec_ca(days=1)
    with pytest.raises(identity.IdentityError, match="expired"):
        identity.mint("node-1", ca, key, days=30, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))


@pytest.mark.parametrize("node", ["Node_1", "", "-node", "node..1", "a" * 240])
def test_names_that_are_not_node_names_are_refused(node: str) -> None:
    with pytest.raises(identity.IdentityError):
        identity.identity_name(node)


def test_a_certificate_that_is_not_a_ca_is_refused_at_the_command_line(install: Install) -> None:
    bot_tls = install.mounted("/etc/kubereach/bot-tls")
    out = install.mounted("/run/kubereach/tls")
    out.mkdir(parents=True)
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--node",
            "node-1",
            "--ca-cert",
            str(bot_tls / "tls.crt"),
            "--ca-key",
            str(bot_tls / "tls.key"),
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == identity.EXIT_CONFIG
    assert "not a CA" in done.stderr
    assert list(out.iterdir()) == []


def test_a_key_that_does_not_belong_to_the_ca_is_refused() -> None:
    ca, _key = _ec_ca(days=3)
    _other, other_key = _ec_ca(days=3)
    with pytest.raises(identity.IdentityError, match="does not belong"):
        identity.load_ca(ca.public_bytes(serialization.Encoding.PEM), key_pem(other_key))
