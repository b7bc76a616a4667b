"""Structured logging for framecast services, a sampler for hot paths, and secret redaction.

Hot paths (per frame, per viewer) never log a line per event: they count into
a `RateLimitedLog`, which emits at most one line per interval saying how many
events happened and why.

Every line a service writes passes `redact_text` (the formatters below apply
it to the finished line, tracebacks included): URL user info and query
values, bearer tokens and JWTs never reach a log, at any level, whoever logs
them (uvicorn's "WebSocket /ws/demo?token=..." line, a debug dump of
headers). `redact_url` is the one redactor for URLs shown anywhere (API
answers, metric labels, logs).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
# scheme://user:pass@host -> scheme://***@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"<>]*@")
# ?key=value&k2=v2 -> ?key=***&k2=***, in URLs and request lines (a value ends at &, #, space or a quote)
_QUERY_VALUE = re.compile(r"([?&][^=&\s#'\"<>?]+=)[^&\s#'\"<>]*")
# a JWT (three base64url parts, the first two JSON objects: "eyJ")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# "Bearer x", "bearer.x" (the WebSocket subprotocol form), "Authorization: x", "'authorization', 'x'"
_BEARER = re.compile(r"(?i)(bearer[ .]|authorization['\"]?\s*[:=,]\s*['\"]?(?:[a-z]+ +)?)[^\s'\",;]+")
_TOKEN_FIELD = re.compile(r"(?i)(['\"]?(?:token|secret|password|api_key|apikey)['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}]+")


def redact_url(url: str) -> str:
    """A URL without user info or query values: `http://u:p@h/a?key=v` -> `http://***@h/a?key=***`; a spec
    that is no URL (`synthetic`, `file:PATH`, `camera:0`) as it is, but for credential-shaped parts."""
    if "://" not in url:
        return redact_text(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{p.partition('=')[0]}={REDACTED}" if "=" in p else REDACTED
                     for p in parts.query.split("&")) if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def redact_text(text: str) -> str:
    """`text` with every credential-shaped part replaced by ***: URL user info and query values,
    JWTs, bearer tokens, Authorization values and `token=`/`password=`-style fields."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_VALUE.sub(rf"\1{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _TOKEN_FIELD.sub(rf"\1{REDACTED}", text)


class RedactingFormatter(logging.Formatter):
    """The text formatter, with `redact_text` over the finished line (message, arguments, traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
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
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimitedLog:
    """Counts events by reason and logs a summary at most once per `interval` seconds."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 10.0) -> None:
        self.logger, self.what, self.interval = logger, what, interval
        self.counts: Counter[str] = Counter()
        self._last = float("-inf")  # the first event is logged at once
        self._since: float | None = None  # first event counted since the last summary

    def event(self, reason: str, n: int = 1, now: float | None = None) -> None:
        self.counts[reason] += n
        now = time.monotonic() if now is None else now
        if self._since is None:
            self._since = now
        if now - self._last >= self.interval:
            summary = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            # the window is what the counts cover: from the first event counted, not from the last summary
            self.logger.warning("%s in the last %.1fs: %s", self.what, now - self._since, summary,
                                extra={"fields": {"event": self.what, **self.counts}})
            self.counts.clear()
            self._last, self._since = now, None


class QuietClientErrors(logging.Filter):
    """Turns a library's per-event log lines about client mistakes into one rate-limited summary line.

    Installed on a library logger (uvicorn's "uvicorn.error"): a record whose message starts with one of
    `prefixes` is dropped (and its traceback with it) and counted under that prefix's kind; `summary` logs
    "client errors in the last 10s: invalid_utf8=300" at most once per interval.
    """

    def __init__(self, prefixes: dict[str, str], summary: RateLimitedLog) -> None:
        super().__init__()
        self.prefixes, self.summary = prefixes, summary

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        for prefix, kind in self.prefixes.items():
            if msg.startswith(prefix):
                self.summary.event(kind)
                return False
        return True
