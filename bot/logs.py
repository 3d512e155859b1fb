"""The bot's logs: readable text locally, one JSON object per line in production, and the id of the
investigation a line belongs to on every line (`-` outside an investigation).

The id travels in a context variable: set once when an investigation starts, it follows the work into
asyncio tasks and worker threads, and `bot.fleet` sends it to the agents as their request id, so an
agent's log lines for that investigation carry the same id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

INVESTIGATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("investigation_id", default="-")


class InvestigationIdFilter(logging.Filter):
    """Adds the current investigation id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach `investigation_id`; never drops a record."""
        record.investigation_id = INVESTIGATION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, investigation_id, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as JSON."""
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "investigation_id": getattr(record, "investigation_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Install one stderr handler in the chosen format ("json" or "text") on the root logger."""
    handler = logging.StreamHandler()
    handler.addFilter(InvestigationIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(investigation_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
