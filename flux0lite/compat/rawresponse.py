"""``raw_response`` of an error: the status, headers and text of the answer that caused it.

With a custom httpx client the SDK's errors carry the ``httpx.Response`` itself, and so do
ours; with flux0lite's own transport this small object offers the same attributes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Mapping


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively (as ``httpx.Headers`` are)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._items: Dict[str, str] = {str(k).lower(): str(v) for k, v in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class RawResponse:
    def __init__(
        self, status_code: int, headers: Mapping[str, str], text: str, url: str = "", method: str = ""
    ) -> None:
        self.status_code = status_code
        self.headers = Headers(headers)
        self.text = text
        self.url = url
        self.method = method

    @property
    def content(self) -> bytes:
        return self.text.encode("utf-8")

    def json(self) -> Any:
        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"<RawResponse [{self.status_code}]>"
