"""Every log line of an investigation carries its id, in text and in JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from bot.logs import INVESTIGATION_ID, InvestigationIdFilter, JsonFormatter


def test_lines_logged_inside_an_investigation_and_its_tasks_and_threads_carry_its_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(InvestigationIdFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("kubereach.test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    async def investigation() -> None:
        INVESTIGATION_ID.set("inv_abc123")
        log.info("started")
        await asyncio.gather(asyncio.to_thread(log.info, "in a worker thread"), asyncio.sleep(0))
        await asyncio.create_task(asyncio.sleep(0))
        log.info("done")

    try:
        log.info("before")
        asyncio.run(investigation())
        log.info("after")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["message"], x["investigation_id"]) for x in lines] == [
        ("before", "-"),
        ("started", "inv_abc123"),
        ("in a worker thread", "inv_abc123"),
        ("done", "inv_abc123"),
        ("after", "-"),
    ]
