"""Run the stock flux0 server, bound to FLUX0_HOST (127.0.0.1) instead of its hard-coded 0.0.0.0."""

import os

import uvicorn

_OriginalConfig = uvicorn.Config


class _BoundConfig(_OriginalConfig):  # type: ignore[misc,valid-type]
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["host"] = os.environ.get("FLUX0_HOST", "127.0.0.1")
        super().__init__(*args, **kwargs)


uvicorn.Config = _BoundConfig  # type: ignore[misc]

from flux0_server.main import main  # noqa: E402

if __name__ == "__main__":
    main()
