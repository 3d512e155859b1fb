"""The bot's settings: one typed model, from environment variables (`KUBEREACH_…`) and a YAML file.

`kubereach --config PATH` (the lab writes one) supplies the cluster, agents and TLS; environment
variables override the file; nothing reads `os.environ` outside this module. Secrets are
`SecretStr` so they never print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import BadInput


class AgentTls(BaseModel):
    """mTLS material the bot presents to agents and uses to verify them."""

    model_config = ConfigDict(frozen=True)

    ca: Path
    """CA bundle that signed the agents' server certificates."""
    cert: Path
    """The bot's client certificate."""
    key: Path
    """The bot's client key."""


class AgentSettings(BaseModel):
    """How the bot finds and calls the node agents."""

    model_config = ConfigDict(frozen=True)

    discovery: Literal["static", "daemonset"] = "daemonset"
    """`static`: use `nodes`; `daemonset`: the agent DaemonSet's pods through the Kubernetes API."""
    nodes: dict[str, str] = Field(default_factory=dict)
    """node name → host:port, for static discovery (the lab's agents)."""
    namespace: str = "kube-system"
    """Namespace of the agent DaemonSet."""
    label_selector: str = "app.kubernetes.io/name=kubereach-agent"
    """Label selector of the agent pods."""
    port: int = 7443
    """The agents' gRPC port."""
    tls: AgentTls | None = None
    """mTLS files; None only with `insecure`."""
    insecure: bool = False
    """Plain TCP to agents (development only; logs a warning)."""
    call_timeout_s: float = 4.0
    """Deadline of one RPC."""
    overall_timeout_s: float = 20.0
    """Deadline of one fan-out round; also how long one investigation retries checks an agent refused or missed."""
    concurrency: int = 64
    """Calls in flight at once."""


class BotSettings(BaseSettings):
    """Everything the bot and the CLI need to run."""

    model_config = SettingsConfigDict(env_prefix="KUBEREACH_", env_nested_delimiter="__", frozen=True, extra="ignore")

    cluster: str = "default"
    """Cluster name shown in replies and stored with investigations."""
    kubeconfig: Path | None = None
    """kubeconfig file; None means in-cluster configuration."""
    agents: AgentSettings = Field(default_factory=AgentSettings)
    """Node agents."""
    database_url: SecretStr | None = None
    """SQLAlchemy URL of the history database; default: SQLite under the user's data directory."""
    default_namespace: str | None = None
    """Namespace assumed when a question names none (channels can override)."""
    cluster_cache_max_staleness_s: float = Field(default=30.0, ge=0, le=3600)
    """Seconds `serve`'s watch caches stay evidence after the API server last confirmed them; then questions list (0: off)."""
    cluster_cache_max_objects: int = Field(default=200000, ge=1, le=10_000_000)
    """A kind with more objects than this is not cached (its reads go to the API): bounds `serve`'s memory."""
    slack_bot_token: SecretStr | None = None
    """Slack bot token (xoxb-…)."""
    slack_signing_secret: SecretStr | None = None
    """Slack signing secret (HTTP mode)."""
    slack_app_token: SecretStr | None = None
    """Slack app-level token (xapp-…, Socket Mode)."""
    slack_api_url: str | None = None
    """Slack Web API base URL (the lab's stand-in; unset in production)."""
    channel_namespaces: dict[str, list[str]] = Field(default_factory=dict)
    """Channel id → namespaces that channel may ask about ("*" for all)."""
    usergroup_namespaces: dict[str, list[str]] = Field(default_factory=dict)
    """User group id (S…) → namespaces its members may ask about in any channel, besides the channel's ("*" for all)."""
    log_format: Literal["text", "json"] = "text"
    """Log output format."""
    slack_investigation_workers: int = Field(default=8, ge=1, le=256)
    """Investigations `serve` runs at once; more wait in a queue (and say so in their thread)."""
    slack_http_threads: int = Field(default=8, ge=1, le=256)
    """Worker threads of `serve`'s HTTP endpoint (they only verify, acknowledge and hand work over)."""
    slack_http_timeout_s: int = Field(default=10, ge=1, le=3600)
    """Seconds an HTTP connection may send nothing (a stalled upload) before `serve` closes it."""
    slack_http_max_body_bytes: int = Field(default=524288, ge=1024, le=16 * 1024 * 1024)
    """Largest request body `serve` accepts (Slack's largest event is about 330 KB); larger ones get 413."""
    slack_http_connection_limit: int = Field(default=1000, ge=1, le=100000)
    """Open HTTP connections `serve` holds at once (a stalled one costs a socket, not a thread)."""
    slack_pictures: bool = True
    """Post the path picture (PNG) in the thread with each verdict (Slack's files v2 upload)."""
    web_ui: bool = False
    """Serve the read-only web UI at /ui/ on `serve`'s HTTP port; Slack replies then link to it."""
    web_url: str | None = None
    """The web UI's base URL as browsers reach it (e.g. https://kubereach.example.com); default: where `serve` listens."""
    web_link_secret: SecretStr | None = None
    """Key that signs web UI links (at least 16 characters); default: derived from the Slack signing secret."""
    web_link_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, le=90 * 24 * 3600)
    """How long a web UI link from Slack stays valid (seconds)."""

    def history_url(self) -> str | None:
        """The history database URL, when one is set (None: KUBEREACH_DATABASE_URL/DATABASE_URL or the default file)."""
        return self.database_url.get_secret_value() if self.database_url else None


def load_settings(config_path: Path | None, **overrides: Any) -> BotSettings:
    """Settings from the config file (if any), environment variables, then explicit overrides."""
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except OSError as exc:
            raise BadInput(
                f"cannot read config {config_path}: {exc.strerror}", hint="`kubereach lab status` prints the lab's config path"
            ) from exc
        except yaml.YAMLError as exc:
            raise BadInput(f"config {config_path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise BadInput(f"config {config_path} must be a mapping")
        data = {k: v for k, v in loaded.items() if k in BotSettings.model_fields}
    try:
        env = BotSettings()
        merged = {**data, **{k: v for k, v in env.model_dump().items() if k in env.model_fields_set}, **overrides}
        return BotSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"invalid setting {where}: {first['msg']}") from exc


def local_user() -> str:
    """Who runs the command-line tool ($USER, else "cli"): how `kubereach ask` and `digest` name the asker."""
    return os.environ.get("USER", "cli")
