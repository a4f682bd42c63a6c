"""The SDK's ``utils``: retry configuration, the event stream types, logging and URL helpers."""

from . import eventstreaming
from .eventstreaming import EventStream, EventStreamAsync
from .logger import Logger, get_default_logger
from .retries import BackoffStrategy, Retries, RetryConfig
from .url import template_url

__all__ = [
    "BackoffStrategy",
    "EventStream",
    "EventStreamAsync",
    "Logger",
    "Retries",
    "RetryConfig",
    "eventstreaming",
    "get_default_logger",
    "template_url",
]
