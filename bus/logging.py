"""Structured logs: JSON lines with the request id bound to every line, personal data redacted.

The request id is bound with structlog's context variables by the request-id middleware, so any
log line written while a request is served carries it. :class:`Redactor` is the processor that
keeps secrets and personal ids out of application logs, whatever an adapter writes.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["Redactor", "configure_logging", "get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class Redactor:
    """Mask secrets by key name and personal numbers by shape, anywhere in the event.

    - keys that name a secret (password, secret, token, key, authorization, cookie, session,
      signature, credential): the value becomes ``"[redacted]"``;
    - digit runs shaped like a personal id (12 digits), an old id (9 digits) or a phone number
      (10-11 digits, or +84...), also when grouped with spaces, dots or dashes, become
      ``"[redacted-number]"``;
    - objects other than plain data (a pydantic model, bytes, an exception) are turned into text
      first, so their contents are masked too.

    Keys the bus itself fills with non-personal values (request id, timestamps, counters) are
    left alone so that log lines stay correlatable.
    """

    SECRET_KEY = re.compile(
        r"pass(word)?|secret|token|key|authori[sz]ation|cookie|session|signature|credential",
        re.I,
    )
    NUMBER = re.compile(r"(?<![\d.])\+?(?:\d[ .-]?){8,11}\d(?![\d])")
    SAFE_KEYS = frozenset(
        {
            "request_id",
            # the exchange record's id (a UUID the bus makes) and number: an operator looks the
            # record up by them, and a UUID's hex can hold a run of digits shaped like a phone
            "record_id",
            "seq",
            "timestamp",
            "level",
            "logger",
            "received_at",
            "duration_ms",
            "http_status",
            "attempts",
            "request_bytes",
            "reply_bytes",
            "error_code",
            "outcome",
        }
    )

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key not in self.SAFE_KEYS:
                event[key] = self._clean(key, value)
        return event

    def __init__(self) -> None:
        #: Whether a key names a secret, per key seen: log lines repeat the same few keys.
        self._secret_keys: dict[str, bool] = {}

    def _names_secret(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            known = self.SECRET_KEY.search(key) is not None
            if len(self._secret_keys) < 10_000:  # bounded: keys are code, but not only
                self._secret_keys[key] = known
        return known

    def _clean(self, key: str, value: Any) -> Any:
        if self._names_secret(key):
            return "[redacted]"
        if type(value) is str:  # the common case first: the checks below include an ABC's
            return self.NUMBER.sub("[redacted-number]", value)
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if -(10**8) < value < 10**8:  # fewer than 9 digits: no personal number's shape
                return value
            return self._clean(key, str(value)) if self.NUMBER.fullmatch(str(value)) else value
        if isinstance(value, Mapping):
            return {str(k): self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(key, v) for v in value]
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        elif not isinstance(value, str):
            value = str(value)
        return self.NUMBER.sub("[redacted-number]", value)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # stream type varies
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _CurrentStderr:
    """A file that writes to whatever ``sys.stderr`` is at the time of the write: a logger
    configured once must not keep a stream a test runner has since closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for the process, and route the standard library's loggers (uvicorn's
    among them) through the same processors, so every line is one format and redacted."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(),
    ]
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS.get(level, logging.ERROR))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # httpx logs every request URL at INFO, zeep whole envelopes at DEBUG: personal data.
    for name in ("httpx", "httpcore", "zeep", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]  # a write/flush file is all WriteLogger uses
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("lgsp").bind(**bound)
    return logger
