"""The API server on each node namespace's own loopback, without any address outside the lab.

    python -m lab.upstream.relay --state-dir DIR --port PORT --netns NS [--netns NS …] --ready-fd N

A node namespace has a loopback of its own, so a kube-proxy inside it cannot reach the API server on
the root namespace's 127.0.0.1. This process opens one listening socket inside each node namespace
(a socket stays in the namespace it was created in; it is created on a thread that entered the
namespace, see `nodeagent.netns`), bound to 127.0.0.1:PORT there, and forwards every connection, as
bytes, to 127.0.0.1:PORT in its own (root) namespace. TLS passes through untouched: kube-proxy still
verifies the API server's certificate and presents its own. No route, address or interface is added
anywhere, and nothing outside loopback is reachable through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from nodeagent.netns import netns_path, socket_in_netns

log = logging.getLogger("kubereach.lab.relay")
LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024


def listener_in(netns: str, port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:`port` inside the named namespace."""
    sock = socket_in_netns(netns_path(netns), socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _forward(port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(LOOPBACK, port)
    except OSError as exc:
        log.warning("the API server at %s:%d refused a relayed connection: %s", LOOPBACK, port, exc)
        client_writer.close()
        return
    try:
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
    finally:
        for w in (client_writer, server_writer):
            w.close()
            with contextlib.suppress(OSError, ConnectionError):
                await w.wait_closed()


async def serve(port: int, listeners: list[socket.socket], ready_fd: int | None) -> None:
    """Forward connections from every listener until SIGTERM."""
    servers = [await asyncio.start_server(functools.partial(_forward, port), sock=sock) for sock in listeners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    """Open the listeners, then relay until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.upstream.relay")
    parser.add_argument("--state-dir", required=True, type=Path, help="the lab instance (marks the process as the lab's)")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--netns", action="append", required=True)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    listeners = [listener_in(ns, args.port) for ns in args.netns]
    log.info("relaying 127.0.0.1:%d in %s to 127.0.0.1:%d", args.port, ", ".join(args.netns), args.port)
    asyncio.run(serve(args.port, listeners, args.ready_fd))


if __name__ == "__main__":
    main()
