"""Property tests with hostile input: patch operations and command lines (needs hypothesis)."""

from __future__ import annotations

import io
import re
from typing import List, Tuple

import pytest

from flux0lite.cli import main
from flux0lite.models import JsonPatch
from flux0lite.patch import PatchedDocument
from tests.conftest import FULL_STRENGTH, HYPOTHESIS_EXAMPLES
from tests.fakeserver import FakeFlux0, FakeServer

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
EXAMPLES = 150 if FULL_STRENGTH else HYPOTHESIS_EXAMPLES["quick"]  # the quick variant: the quick profile's


@hypothesis.settings(max_examples=EXAMPLES, deadline=None)
@hypothesis.given(
    st.lists(
        st.tuples(st.sampled_from(["add", "replace", "remove"]), st.integers(0, 1200), st.booleans()),
        max_size=1500,
    )
)
def test_list_operations_match_a_plain_list(ops: List[Tuple[str, int, bool]]) -> None:
    """Whatever the mix of operations, the document equals a plain list treated the same way."""
    patched = PatchedDocument([])
    expected: List[int] = []
    for number, (op, where, at_end) in enumerate(ops):
        if op == "add":
            index = len(expected) if at_end else where % (len(expected) + 1)
            patched.apply(JsonPatch("add", "/-" if at_end else f"/{index}", number))
            expected.insert(index, number)
        elif expected:
            index = where % len(expected)
            patched.apply(JsonPatch(op, f"/{index}", number))
            if op == "replace":
                expected[index] = number
            else:
                del expected[index]
    assert patched.value() == expected


HOSTILE_WORDS = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e400",
    "1e7",
    "0.5",
    "²",
    "٣",
    "9" * 5000,
    "",
    "-",
    "tök€n",
    "用户",
    "a;b",
    "\x1b[31m",
    "\x1b]8;;http://x/\x07",
    "\u202e",
    "\udcff",
    "\ud800",
    "htps://admin:pw-S3CRET@host",
    "http://admin:pw-S3CRET@127.0.0.1:99999/",
    "http://[::1/x",
    "file:///etc/passwd",
    "http://ü.example",
    "id00000001",
    "x" * 10_000,
    "--",
    "-h",
]
OPTIONS = [
    "--json",
    "--jsonl",
    "--timeout",
    "--retries",
    "--token",
    "--user",
    "--server-url",
    "--name",
    "--type",
    "--agent",
    "--title",
    "--id",
    "--greeting",
    "--min-offset",
    "--source",
    "--type",
    "--correlation-id",
    "--new",
    "agents",
    "sessions",
    "events",
    "chat",
    "list",
    "get",
    "create",
]
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def flux0_for_properties() -> "Tuple[FakeServer, FakeFlux0]":
    server = FakeServer()
    flux0 = FakeFlux0(server)
    flux0.add_session(flux0.add_agent(name="\x1b[31mred\x07 \ud800"))
    yield server, flux0  # type: ignore[misc]
    server.close()


@hypothesis.settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@hypothesis.given(
    words=st.lists(st.sampled_from(HOSTILE_WORDS + OPTIONS) | st.text(max_size=20), max_size=8),
    stdin=st.text(max_size=50),
)
def test_any_command_line_ends_in_a_documented_exit(
    words: List[str], stdin: str, flux0_for_properties: "Tuple[FakeServer, FakeFlux0]", monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = flux0_for_properties
    monkeypatch.setenv("FLUX0_SERVER_URL", server.url)
    # No retries: a refused connection must not wait through backoff in a property test.
    argv = ["--retries", "0", "--timeout", "2", *words]
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    assert code in (0, 1, 2, 3), (argv, err.getvalue())
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    assert "S3CRET" not in text and "S3CRET" not in out.getvalue()
    assert not RAW_CONTROL.search(text), (argv, text)
