"""``python -m flux0lite``; ``run`` is also the entry point of ``flux0lite.pyz``."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs a third of bare Python's start-up; -h and --version need none of it
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    """Run the command line and exit with its code.

    A zipapp's generated ``__main__`` (``python -m zipapp -m flux0lite.__main__:run``) ignores
    what its function returns, so the exit code must leave through ``sys.exit`` here.
    """
    from .cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
