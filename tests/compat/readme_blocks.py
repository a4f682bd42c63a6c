"""The official SDK README's Python code blocks, read from the shared copy at test time.

Nothing of the SDK's text is stored in this project: the tests extract each block by the
section it sits in and run it with only its imports changed (``flux0_client`` ->
``flux0lite.compat``), or unchanged through the ``install_as_flux0_client()`` hook. Three
blocks do not run as printed, on any implementation, and get a named, minimal repair here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

SECTION = re.compile(r"^## (.+?)\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")


def python_blocks(readme: Path) -> Dict[str, List[str]]:
    """``{"Retries": [block, block], ...}``: the Python blocks of each ``##`` section, in order."""
    blocks: Dict[str, List[str]] = {}
    section = ""
    current: List[str] = []
    language = None
    for line in readme.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if language is None:
            heading = SECTION.match(line)
            if heading:
                section = heading.group(1)
            elif fence and fence.group(1):
                language, current = fence.group(1), []
        elif fence and not fence.group(1):
            if language == "python":
                blocks.setdefault(section, []).append("\n".join(current) + "\n")
            language = None
        else:
            current.append(line)
    return blocks


def rename_imports(code: str) -> str:
    """The one change the issue allows: ``flux0_client`` -> ``flux0lite.compat`` in imports."""
    code = re.sub(r"^(\s*)from flux0_client(\.|\s)", r"\1from flux0lite.compat\2", code, flags=re.M)
    return re.sub(r"^(\s*)import flux0_client\s*$", r"\1import flux0lite.compat as flux0_client", code, flags=re.M)


# -- the SDK README's own bugs, repaired as little as possible -----------------------------------


def repair_stray_comma(code: str) -> str:
    """Retries example: ``list(,`` is a SyntaxError; the call it means is ``list(``."""
    assert "list(," in code
    return code.replace("list(,", "list(")


def repair_empty_with_blocks(code: str) -> str:
    """Resource Management: each ``with`` body is only a comment (SyntaxError); add ``pass``."""
    return re.sub(r"^(\s*)(# Rest of application here\.\.\.)$", r"\1\2\n\1pass", code, flags=re.M)


def repair_missing_typing_import(code: str) -> str:
    """Custom HTTP Client wrapper: uses Any, Optional and Union without importing them."""
    return "from typing import Any, Optional, Union\n" + code
