"""Regressions for flux0-sync's command-line defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flux0sync.config import ConfigError, load_config

SECRET = "tok-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"FLUX0_TOKEN={SECRET}\nFLUX0_SERVER_URL=http://127.0.0.1:8080\n", 1),  # the systemd env file
        (f"[flux0-sync]\nserver_url = http://127.0.0.1:8080\ntoken {SECRET}\n", 3),
        (f"[flux0-sync]\ntoken = {SECRET}\ntoken = {SECRET}\n", 3),
    ],
    ids=["env-file", "line-without-equals", "duplicate"],
)
def test_a_malformed_config_line_is_named_by_number_never_quoted(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "flux0-sync.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config({"config_file": str(path)}, {})
    message = str(caught.value)
    assert SECRET not in message and str(path) in message and f"line {line}" in message


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    # reading a FIFO or /dev/zero would block (or eat memory) where SIGTERM cannot end it
    path = tmp_path / "flux0-sync.ini"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path(os.devnull)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config({"config_file": str(path)}, {})
