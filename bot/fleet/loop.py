"""The fleet of the running event loop: gRPC channels belong to the loop that opened them, so a process
that investigates on several loops (the CLI's `asyncio.run`, the Slack app's loop thread) keeps one
`Fleet` for the current loop, across investigations, and retargets it when the agents move."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from bot.fleet.client import CallMetrics, Fleet
from bot.settings import AgentSettings


class LoopFleet:
    """One `Fleet` per event loop, made on first use and closed on the loop that opened it."""

    def __init__(self, settings: AgentSettings, metrics: CallMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._fleet: Fleet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def current(self, addresses: Mapping[str, str]) -> Fleet:
        """The fleet of the running loop, kept open across investigations (channels are per loop)."""
        loop = asyncio.get_running_loop()
        if self._fleet is None or self._loop is not loop:
            self._fleet = Fleet(addresses, self.settings, self.metrics)
            self._loop = loop
        elif self._fleet.addresses != dict(addresses):
            self._fleet.retarget(dict(addresses))
        return self._fleet

    async def aclose(self) -> None:
        """Close the channels when called on the loop that opened them; forget them either way."""
        if self._fleet is not None and self._loop is asyncio.get_running_loop():
            await self._fleet.close()
        self._fleet = None

    def close(self) -> None:
        """Close the channels from another thread while their loop still runs; forget them either way."""
        fleet, loop = self._fleet, self._loop
        self._fleet = self._loop = None
        if fleet is not None and loop is not None and loop.is_running() and not loop.is_closed():
            running = None
            with contextlib.suppress(RuntimeError):  # no loop runs in this thread
                running = asyncio.get_running_loop()
            if running is not loop:
                asyncio.run_coroutine_threadsafe(fleet.close(), loop).result(timeout=10)
