from __future__ import annotations

import email.utils
import pickle
import time

import pytest

from flux0lite import errors
from flux0lite.errors import APIError, ConfigError, ValidationError, error_for_status
from flux0lite.retry import Retry, parse_retry_after


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = Retry(backoff_factor=0.5, max_backoff=3, jitter=False)
    assert [policy.backoff(n) for n in range(0, 6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff(10_000) == 3
    jittered = Retry(backoff_factor=1, max_backoff=100, random_source=lambda: 0.25)
    assert jittered.backoff(3) == 1.0
    import random

    full = Retry(backoff_factor=1, max_backoff=8)
    random.seed(1)
    samples = [full.backoff(4) for _ in range(200)]
    assert all(0 <= s <= 8 for s in samples) and len(set(samples)) > 100


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after("1_000") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 31
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_delay_prefers_retry_after_and_clamps_it() -> None:
    policy = Retry(backoff_factor=1, jitter=False, max_retry_after=10)
    assert policy.delay(1, {"retry-after": "4"}) == 4
    assert policy.delay(1, {"retry-after": "86400"}) == 10
    assert policy.delay(2, {}) == 2
    assert Retry(respect_retry_after=False, jitter=False, backoff_factor=1).delay(1, {"retry-after": "9"}) == 1


def test_idempotency_rules() -> None:
    policy = Retry()
    assert policy.may_retry_status("GET", 503) and not policy.may_retry_status("POST", 503)
    assert not policy.may_retry_status("GET", 500)
    assert policy.with_total(0).total == 0


def test_retry_safety_is_decided_by_the_error_type() -> None:
    policy = Retry()
    # a connect failure proves nothing was sent: any method may go again
    assert policy.may_retry_error("POST", errors.ConnectError("refused"))
    assert policy.may_retry_error("POST", errors.ConnectTimeout("slow"))
    # ... except a failed TLS handshake, which would fail the same way again
    assert not policy.may_retry_error("GET", errors.TLSError("bad certificate"))
    # after sending, only an idempotent method is re-sent
    for sent in (errors.ReadTimeout("quiet"), errors.APIConnectionError("reset"), errors.StreamError("cut")):
        assert not policy.may_retry_error("POST", sent)
        assert policy.may_retry_error("GET", sent)
    # a malformed or oversized answer would come back the same
    for final in (errors.ProtocolError("bad"), errors.ResponseTooLargeError("big"), errors.RedirectError("loop")):
        assert not policy.may_retry_error("GET", final)


def test_parse_retry_after_lives_in_the_leaf_module_and_stays_importable() -> None:
    from flux0lite import httputil, retry

    assert retry.parse_retry_after is httputil.parse_retry_after
    assert errors.RateLimitedError(429, "slow", headers={"retry-after": "7"}).retry_after == 7.0


@pytest.mark.parametrize("kwargs", [{"total": -1}, {"total": 1.5}, {"backoff_factor": -1}, {"max_backoff": "x"}])
def test_invalid_policies(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Retry(**kwargs)


def test_errors_pickle_and_keep_fields() -> None:
    err = error_for_status(
        422,
        {"detail": [{"loc": ["body", "name"], "msg": "too short"}]},
        {"x": "1"},
        method="POST",
        url="http://h/api/agents",
    )
    assert isinstance(err, ValidationError)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is ValidationError and clone.status_code == 422 and clone.headers == {"x": "1"}
    assert str(clone) == str(err) and clone.errors == err.errors
    assert str(err) == "HTTP 422 (POST http://h/api/agents): name: too short"


def test_every_error_is_a_flux0_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.Flux0Error)
    assert issubclass(errors.ConnectTimeout, errors.ConnectError)
    assert issubclass(errors.ReadTimeout, errors.APITimeoutError)


def test_messages_are_one_line_and_bounded() -> None:
    err = APIError(500, "line1\nline2 " + "x" * 1000)
    assert "\n" not in str(err) and len(str(err)) <= 300
    assert error_for_status(502, "<html>bad gateway</html>", {}).detail is None
    assert error_for_status(599, None, {}, reason="Weird").detail_message == "Weird"
