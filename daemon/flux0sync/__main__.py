"""``python -m flux0sync``; ``run`` is also the entry point of ``flux0-sync.pyz``."""

import sys
from typing import NoReturn


def run() -> NoReturn:
    """Run the daemon's command line and exit with its code (see ``flux0lite.__main__.run``)."""
    from flux0lite.__main__ import skip_final_collection

    from .cli import main

    code = main()
    skip_final_collection()
    sys.exit(code)


if __name__ == "__main__":
    run()
