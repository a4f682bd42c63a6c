"""``models.HTTPValidationError``: a 422 whose ``detail`` is FastAPI's list of field errors.

Raised, as by the SDK, by ``agents.retrieve``, ``sessions.list`` and ``sessions.retrieve``; it
is a :class:`flux0lite.ValidationError`, so native handlers catch it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from flux0lite import errors as native

from ..rawresponse import RawResponse
from ..types import BaseModel
from .apierror import body_text, printable
from .validationerror import ValidationError

__all__ = ["HTTPValidationError", "HTTPValidationErrorData", "validation_error_from_native"]


@dataclass
class HTTPValidationErrorData(BaseModel):
    detail: Optional[List[ValidationError]] = None


class HTTPValidationError(native.ValidationError):
    def __init__(self, data: HTTPValidationErrorData, raw_response: Any = None) -> None:
        self.data = data
        self.raw_response = raw_response
        text = getattr(raw_response, "text", "") or data.model_dump_json()
        headers = getattr(raw_response, "headers", None) or {}
        super().__init__(
            422,
            "; ".join(e.msg for e in data.detail or []) or "validation error",
            body=None,
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            method=str(getattr(raw_response, "method", "") or ""),
            url=str(getattr(raw_response, "url", "") or ""),
        )
        self.body = text

    @property
    def detail(self) -> Any:
        return [e.model_dump() for e in self.data.detail or []]

    def __str__(self) -> str:
        return printable(self.data.model_dump_json())

    def __reduce__(self) -> Tuple[Any, ...]:
        raw = self.raw_response if isinstance(self.raw_response, RawResponse) else None
        return (HTTPValidationError, (self.data, raw))


def validation_error_from_native(error: native.APIError, raw_response: Any = None) -> Optional[HTTPValidationError]:
    """The SDK's 422 error when the body is FastAPI's list of field errors, else None."""
    detail = error.body.get("detail") if isinstance(error.body, dict) else None
    if error.status_code != 422 or not isinstance(detail, list):
        return None
    data = HTTPValidationErrorData(detail=[ValidationError.from_json(item) for item in detail])
    if raw_response is None:
        raw_response = RawResponse(422, error.headers, body_text(error), error.url, error.method)
    return HTTPValidationError(data, raw_response)
