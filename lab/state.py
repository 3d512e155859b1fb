"""What a running lab remembers: its options, processes, API, agents and injected faults.

Everything lives in one directory per instance, `/run/kubereach/<prefix>/` (tmpfs: gone after a
reboot, like the namespaces). `state.json` is rewritten atomically; `config.yaml` is the file that
`kubereach --config PATH …` reads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT
from lab.plan import LabOptions

STATE_ROOT = Path("/run/kubereach")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,5}$")


def validate_prefix(prefix: str) -> str:
    """A lab prefix: 1–6 lowercase letters/digits starting with a letter (names stay short)."""
    if not _PREFIX.fullmatch(prefix):
        raise LabError(f"lab prefix {prefix!r} must be 1–6 lowercase letters or digits, starting with a letter", exit_code=2)
    return prefix


def state_dir(prefix: str, root: Path = STATE_ROOT) -> Path:
    """The instance's directory."""
    return root / validate_prefix(prefix)


@dataclass
class LabState:
    """The running lab instance."""

    prefix: str
    nodes: int
    cni: str
    proxy: str
    directory: str
    spec_file: str
    kube_proxy_layout: str = DEFAULT_NFT_LAYOUT
    """The nftables layout the lab's kube-proxy imitates (labs from before the setting: the default)."""
    api_url: str = ""
    token_file: str = ""
    kubeconfig: str = ""
    ca_file: str = ""
    """The lab CA's certificate: the API server's (https) certificate is issued by it."""
    kubernetes: str = ""
    """The upstream version (`kube-apiserver --version`) with `--kubernetes DIR`; empty for the lab's own API."""
    kubernetes_dir: str = ""
    """The directory of release binaries the upstream control plane runs from."""
    config_file: str = ""
    processes: dict[str, int] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    up_seconds: float = 0.0
    slack: dict[str, Any] = field(default_factory=dict)
    """The Slack stand-in: origin, channel, user, workspace file (secrets stay in that file and the config)."""

    @property
    def options(self) -> LabOptions:
        """The options the lab was built with."""
        return LabOptions(
            prefix=self.prefix,
            nodes=self.nodes,
            cni=self.cni,  # type: ignore[arg-type]
            proxy=self.proxy,  # type: ignore[arg-type]
            kube_proxy_layout=self.kube_proxy_layout,  # type: ignore[arg-type]
        )

    @property
    def path(self) -> Path:
        """The instance directory."""
        return Path(self.directory)

    def save(self) -> None:
        """Write state.json atomically."""
        target = self.path / "state.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, target)


def load_state(prefix: str, root: Path = STATE_ROOT) -> LabState | None:
    """The instance's state, or None when no lab with that prefix is up."""
    path = state_dir(prefix, root) / "state.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"lab state {path} is unreadable ({exc})", hint="run `kubereach lab down` to clean up") from exc
    return LabState(**data)


def require_state(prefix: str, root: Path = STATE_ROOT) -> LabState:
    """The instance's state, or a LabError saying how to bring the lab up."""
    state = load_state(prefix, root)
    if state is None:
        raise LabError(f"no lab with prefix {prefix!r} is up", hint="run `kubereach lab up` first")
    return state


def write_config(state: LabState, ca: Path, cert: Path, key: Path, kubeconfig: Path | None = None) -> Path:
    """Write the config file the bot and the CLI read (`kubereach --config PATH`).

    `kubeconfig`: the bot's own (upstream: its ServiceAccount's token); default the lab's kubeconfig.
    """
    config = {
        "cluster": f"kubereach-lab-{state.prefix}",
        "kubeconfig": str(kubeconfig) if kubeconfig is not None else state.kubeconfig,
        "agents": {
            "discovery": "static",
            "nodes": dict(sorted(state.agents.items())),
            "port": 7443,
            "tls": {"ca": str(ca), "cert": str(cert), "key": str(key)},
        },
        "lab": {"prefix": state.prefix, "state_dir": state.directory},
    }
    if state.slack:
        workspace = json.loads(Path(state.slack["workspace"]).read_text())
        origin = state.slack["origin"]
        config.update(
            {
                "slack_bot_token": workspace["bot_token"],
                "slack_app_token": workspace["app_token"],
                "slack_signing_secret": workspace["signing_secret"],
                "slack_api_url": f"{origin}/api/",
                "channel_namespaces": {state.slack["channel"]: ["*"], state.slack["shop_channel"]: ["shop"]},
                "usergroup_namespaces": {state.slack["usergroup"]: ["*"]},
                "slack": {
                    "api": f"{origin}/api/",
                    "control": origin,
                    "channel": state.slack["channel"],
                    "user": state.slack["user"],
                },
            }
        )
    path = state.path / "config.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# written by `kubereach lab up`\n" + yaml.safe_dump(config, sort_keys=False))
    return path
