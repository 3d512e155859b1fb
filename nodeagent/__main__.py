"""`python -m nodeagent`: run the node agent.

    python -m nodeagent --node NAME --listen 127.0.0.1:0 [--host-netns NS]
        --tls-cert F --tls-key F --tls-client-ca F [--insecure] [--port-file PATH] [--log-format json|text]

Settings come from KUBEREACH_AGENT_* environment variables; flags given on the command line win.
Once listening, the bound port is written to --port-file; SIGTERM drains and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from nodeagent.errors import InvalidRequest
from nodeagent.logconfig import configure_logging
from nodeagent.netns import InvalidNamespaceName, NamespaceNotFound, netns_path
from nodeagent.settings import AgentSettings
from nodeagent.tls import TlsMaterialError

EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; every flag defaults to None so that unset flags leave env settings alone."""
    parser = argparse.ArgumentParser(prog="python -m nodeagent", description="kubereach node agent (read-only, mTLS gRPC)")
    parser.add_argument("--node", help="the node name this agent speaks for")
    parser.add_argument("--listen", help="host:port to bind (port 0: the kernel picks one)")
    parser.add_argument("--host-netns", help="named namespace to treat as the node's own (the lab)")
    parser.add_argument("--bpffs", type=Path, help="where the BPF filesystem is mounted (pinned maps are only listed)")
    parser.add_argument("--tls-cert", type=Path, help="PEM server certificate")
    parser.add_argument("--tls-key", type=Path, help="PEM server private key")
    parser.add_argument("--tls-client-ca", type=Path, help="PEM CA that signs client certificates")
    parser.add_argument("--insecure", action="store_true", default=None, help="plain TCP, no TLS (development only)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--log-format", choices=["json", "text"], help="log line format")
    parser.add_argument("--log-level", help="logging level (INFO, DEBUG, ...)")
    parser.add_argument("--health-port", type=int, help="plaintext grpc.health.v1-only port for kubelet probes")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: the kernel picks one)")
    parser.add_argument("--ops-host", help="address the health and metrics listeners bind (default 0.0.0.0)")
    parser.add_argument("--metrics-port-file", type=Path, help="write the bound metrics port here once listening")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    """Environment settings overridden by the flags that were given."""
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    return AgentSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM; return the process exit code."""
    # deferred: the server pulls in grpc and the generated stubs (heavy); `--help` and the settings
    # helpers the deploy tests import do not need them
    from nodeagent.server import ServerConfigError, serve

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"nodeagent: invalid settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format, settings.log_level)
    log = logging.getLogger("nodeagent")
    try:
        if settings.host_netns is not None:
            netns_path(settings.host_netns)
        asyncio.run(serve(settings))
    except (InvalidNamespaceName, NamespaceNotFound) as exc:
        log.error("cannot use --host-netns: %s; create the namespace first or drop the flag", exc)
        return EXIT_CONFIG
    except (ServerConfigError, TlsMaterialError, InvalidRequest) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
