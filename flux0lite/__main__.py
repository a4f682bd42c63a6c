"""``python -m flux0lite``; ``run`` is also the entry point of ``flux0lite.pyz``."""

from __future__ import annotations

import gc
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

    code = main()
    skip_final_collection()
    sys.exit(code)


def skip_final_collection() -> None:
    """Spare the interpreter's last full garbage collection at exit.

    Python ends by walking every object it tracks, the imported modules and classes included:
    10-15 % of the CPU of a whole CLI call (~7 ms of ``agents list``, ~20 ms of a daemon pass).
    Nothing at exit needs it: the commands close their files and archives themselves, logging
    flushes at exit, and the process's memory goes back whole. Frozen objects are left out of
    every later collection, that last one included.
    """
    gc.freeze()


if __name__ == "__main__":
    run()
