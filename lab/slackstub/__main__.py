"""The lab's Slack stand-in as a process: ``python -m lab.slackstub --workspace FILE --ready-fd N``.

`kubereach lab up` starts it with a workspace file (tokens, the channels and the person the lab
provides) and waits for ``ready ORIGIN`` on the ready fd; `kubereach lab down` stops it. It serves the
Web API, response URLs, Socket Mode (``apps.connections.open`` and its WebSocket) and the lab's control
routes (`lab.slackstub.control`) until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from lab.slackstub.server import SlackStub
from lab.slackstub.state import SlackState

log = logging.getLogger("kubereach.lab.slack")


def build_stub(workspace: dict[str, object]) -> SlackStub:
    """A stand-in holding the lab's workspace: its tokens, channels, people and user groups."""
    state = SlackState(bot_token=str(workspace["bot_token"]))
    for channel in workspace.get("channels") or []:  # type: ignore[attr-defined]
        state.add_channel(str(channel["name"]), channel_id=str(channel["id"]))
    for user in workspace.get("users") or []:  # type: ignore[attr-defined]
        state.add_user(str(user["name"]), user_id=str(user["id"]))
    for group in workspace.get("usergroups") or []:  # type: ignore[attr-defined]
        state.add_usergroup(str(group["handle"]), [str(u) for u in group["users"]], group_id=str(group["id"]))
    return SlackStub(state, app_token=str(workspace["app_token"]) if workspace.get("app_token") else None)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.slackstub")
    parser.add_argument("--workspace", required=True, type=Path, help="JSON: bot_token, app_token, channels, users")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--instance", help="The lab prefix (so `lab down` finds this process even without its state)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    stub = build_stub(json.loads(args.workspace.read_text()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stub.start()
    log.info("Slack stand-in at %s (Socket Mode at %s)", stub.origin, stub.socket_mode.origin if stub.app_token else "-")
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"ready {stub.origin}\n".encode())
        os.close(args.ready_fd)
    stop.wait()
    stub.stop()


if __name__ == "__main__":
    main()
