"""Structured JSON logs: one object per line, request-scoped fields bound through contextvars."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog
from aiohttp.http_exceptions import BadHttpMessage


def configure_logging(level: str = "info") -> None:
    """Send structlog and stdlib logging to stderr as JSON lines. Call once, at process start."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            # orjson straight to bytes: the access log runs once per request, so it must be cheap.
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's own access logger is replaced by ours (ocicore.web.accesslog).
    logging.getLogger("aiohttp.access").disabled = True
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_briefly)


def _malformed_requests_briefly(record: logging.LogRecord) -> bool:
    """A malformed request is the client's fault (it got a 400): one line without a
    traceback, so that anyone on the network cannot flood the log with stack traces."""
    if record.exc_info and isinstance(record.exc_info[1], BadHttpMessage):
        record.msg = f"malformed request: {record.exc_info[1].message}"[:300]
        record.args = ()
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
    return True
