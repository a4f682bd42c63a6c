"""Regressions for the PostgreSQL defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import io
from typing import List

import pytest
from flux0sync.cli import main
from flux0sync.service import EXIT_CONFIG

pytestmark = pytest.mark.usefixtures("pg_driver")

SECRET = "S3CRETPW"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@[::1/db",  # libpq quotes the whole URI
        f"postgresql://u:{SECRET}@[::1]x/db",  # the same, for a URL urllib splits
        "postgresql://u:S3CR%zzETPW@h/db",  # libpq quotes the password alone
        f"postgresql://u@h/db?password={SECRET}&x=%zz",
    ],
)
@pytest.mark.parametrize("command", [[], ["status"]], ids=["daemon", "status"])
def test_a_url_the_driver_refuses_is_a_config_error_that_never_shows_the_password(url: str, command: List[str]) -> None:
    err = io.StringIO()
    code = main([*command, "--db", url, "--server-url", "http://127.0.0.1:9"], stdout=io.StringIO(), stderr=err)
    assert code == EXIT_CONFIG, err.getvalue()
    assert SECRET not in err.getvalue() and "S3CR%zzETPW" not in err.getvalue()
