from __future__ import annotations

from typing import Dict, Optional

from flux0lite import ConfigError

__all__ = ["template_url"]


def template_url(url_with_params: str, params: Optional[Dict[str, str]]) -> str:
    """Fill ``{name}`` placeholders of a server URL from ``params``; unknown names are an error."""
    url = url_with_params
    for name, value in (params or {}).items():
        url = url.replace("{" + name + "}", str(value))
    if "{" in url and "}" in url[url.index("{") :]:
        raise ConfigError(f"server URL {url!r} still has a placeholder; pass it in url_params")
    return url
