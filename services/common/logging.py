"""structlog setup: JSON in production, readable console in development."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+)")


def mask(text: str) -> str:
    """Mask phone numbers, ID-card numbers and e-mail addresses in free text."""
    text = _ID_NUMBER.sub(r"\1********\2", text)
    text = _PHONE.sub(r"\1****\2", text)
    return _EMAIL.sub(r"\1***\2", text)


def _mask_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask(value)
    return event_dict


def configure_logging(*, service: str, center: str, log_format: str, level: str = "INFO") -> None:
    """Configure structlog and stdlib logging once per process, binding service and center."""
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(message)s")
    structlog.contextvars.bind_contextvars(service=service, center=center)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; bind case_number, event_id and trace where known."""
    return structlog.get_logger(name)
