"""Run a program written for flux0-client on flux0lite, unchanged.

    python -m flux0lite.compat MODULE[:FUNCTION] [ARGS...]

installs the ``flux0_client`` import alias, then runs MODULE as ``__main__`` (or calls
MODULE.FUNCTION()) with ARGS as its command line. For example, the official flux0 CLI:

    python -m flux0lite.compat flux0_cli.main:main agents list
"""

from __future__ import annotations

import importlib
import importlib.util
import runpy
import sys
from typing import List, Optional

from flux0lite import Flux0Error

from .hook import install_as_flux0_client


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print((__doc__ or "").strip())
        return 0 if args else 2
    target, rest = args[0], args[1:]
    module_name, _, function = target.partition(":")
    install_as_flux0_client()
    problem = _not_runnable(module_name, bool(function))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    sys.argv = [target, *rest]
    try:
        if not function:
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)
            return 0
        entry = getattr(importlib.import_module(module_name), function, None)
        if not callable(entry):
            print(f"error: {module_name} has no function {function!r}", file=sys.stderr)
            return 2
        result = entry()
        return result if isinstance(result, int) else 0
    except ImportError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            print(f"error: cannot import {module_name}: {exc}", file=sys.stderr)
            return 2
        raise
    except Flux0Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _not_runnable(module_name: str, calls_a_function: bool) -> Optional[str]:
    """Why MODULE cannot be run here (found before running anything), or None."""
    try:
        spec = importlib.util.find_spec(module_name) if module_name else None
    except (ImportError, ValueError) as exc:  # a parent package missing, a relative name
        return f"cannot import {module_name}: {exc}"
    if spec is None:
        return f"cannot import {module_name}: no module named {module_name!r}"
    if not calls_a_function and not hasattr(spec.loader, "get_code"):  # the flux0_client alias
        return f"{module_name} cannot be run as a program: name a function, MODULE:FUNCTION"
    return None


if __name__ == "__main__":
    sys.exit(main())
