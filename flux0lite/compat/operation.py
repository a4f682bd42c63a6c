"""One API operation as data: method, path, query, body; shared by both transports."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from flux0lite import ConfigError, ContentTypeError, DecodeError, ModelError
from flux0lite import errors as native

from .models.apierror import APIError, from_native
from .models.httpvalidationerror import HTTPValidationError, validation_error_from_native

__all__ = ["Operation", "segment", "sdk_error", "decode_json_body", "data_list", "error_body", "lower_headers"]


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    params: Optional[Mapping[str, str]] = None
    body: Any = None
    # The SDK raises HTTPValidationError for a 422 only on these operations (others: APIError).
    validation_422: bool = False

    @property
    def body_bytes(self) -> Optional[bytes]:
        if self.body is None:
            return None
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def segment(value: Any, name: str) -> str:
    """A path parameter, percent-encoded so that ``/``, ``?`` or ``#`` cannot change the URL."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return urllib.parse.quote(value, safe="")


def sdk_error(error: native.APIError, operation: Operation, raw_response: Any = None) -> native.APIError:
    """The SDK's error for an error status: HTTPValidationError or models.APIError."""
    if isinstance(error, (APIError, HTTPValidationError)):
        return error
    if operation.validation_422:
        validation = validation_error_from_native(error, raw_response)
        if validation is not None:
            return validation
    sdk = from_native(error)
    if raw_response is not None:
        sdk.raw_response = raw_response
    return sdk


def decode_json_body(content: bytes, content_type: str, what: str) -> Any:
    media = content_type.split(";")[0].strip().lower()
    if media and not (media == "application/json" or media.endswith("+json")):
        raise ContentTypeError(f"expected JSON from {what}, got {media!r}")
    try:
        return json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: body is not valid UTF-8 (byte {exc.start})") from exc
    except RecursionError as exc:
        raise DecodeError(f"{what}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise DecodeError(f"{what}: malformed JSON: {exc}") from exc


def data_list(payload: Any, what: str) -> list:  # type: ignore[type-arg]
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        return list(payload["data"])
    raise ModelError(f'{what}: expected {{"data": [...]}}, got {type(payload).__name__}')


def error_body(content: bytes) -> Any:
    """An error body as flux0lite keeps it: the JSON if it parses, else (bounded) text."""
    try:
        return json.loads(content.decode("utf-8")) if content else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return content.decode("utf-8", "replace")[:2000]


def lower_headers(headers: Any) -> Dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}
