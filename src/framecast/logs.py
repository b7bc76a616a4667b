"""Structured logging for framecast services, and a sampler for hot paths.

Hot paths (per frame, per viewer) never log a line per event: they count into
a `RateLimitedLog`, which emits at most one line per interval saying how many
events happened and why.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            body.update(extra)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimitedLog:
    """Counts events by reason and logs a summary at most once per `interval` seconds."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 10.0) -> None:
        self.logger, self.what, self.interval = logger, what, interval
        self.counts: Counter[str] = Counter()
        self._last = 0.0

    def event(self, reason: str, n: int = 1, now: float | None = None) -> None:
        self.counts[reason] += n
        now = time.monotonic() if now is None else now
        if now - self._last >= self.interval:
            summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            self.logger.warning("%s in the last %.0fs: %s", self.what, min(now - self._last, 1e9), summary,
                                extra={"fields": {"event": self.what, **self.counts}})
            self.counts.clear()
            self._last = now
