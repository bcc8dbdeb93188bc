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

    - keys that name a secret (password, secret, token, authorization, api key, credential):
      the value becomes ``"[redacted]"``;
    - digit runs shaped like a personal id (12 digits), an old id (9 digits) or a Vietnamese
      phone number (10-11 digits starting with 0 or 84) become ``"[redacted-number]"``.
    """

    SECRET_KEY = re.compile(
        r"pass(word)?|secret|token|authori[sz]ation|api[_-]?key|credential", re.I
    )
    NUMBER = re.compile(r"(?<!\d)(?:\d{12}|\d{9}|0\d{9,10}|84\d{9,10})(?!\d)")

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            event[key] = self._clean(key, value)
        return event

    def _clean(self, key: str, value: Any) -> Any:
        if self.SECRET_KEY.search(key):
            return "[redacted]"
        if isinstance(value, str):
            return self.NUMBER.sub("[redacted-number]", value)
        if isinstance(value, Mapping):
            return {str(k): self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return self._clean(key, str(value)) if self.NUMBER.fullmatch(str(value)) else value
        return value


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for the process: level, context variables, redaction, renderer."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("lgsp").bind(**bound)
    return logger
