"""orchestra.client.retries and responses: which failures are tried again, how long the client
waits, and the one-line detail of an error answer."""

from __future__ import annotations

import httpx
import pytest

from orchestra.client import ApiError, Unreachable
from orchestra.client.responses import content_of, error_of
from orchestra.client.retries import RetryPolicy, retries_answer, retries_failure

REQUEST = httpx.Request("GET", "http://x/")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("status", [502, 503, 504])
def test_idempotent_methods_are_retried_after_any_unavailable_answer(
    method: str, status: int
) -> None:
    assert retries_answer(method, status)
    assert not retries_answer(method, 500)
    assert not retries_answer(method, 404)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_other_methods_are_retried_only_after_a_503(method: str) -> None:
    assert retries_answer(method, 503)
    assert not retries_answer(method, 502)
    assert not retries_answer(method, 504)


def test_a_connection_never_made_is_retried_for_any_method() -> None:
    refused = httpx.ConnectError("refused", request=REQUEST)
    dropped = httpx.ReadError("reset", request=REQUEST)
    assert retries_failure("POST", refused)
    assert not retries_failure("POST", dropped)
    assert retries_failure("GET", dropped)


def test_the_delay_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=10, base_delay=0.1, max_delay=1.0)
    for attempt in range(10):
        assert 0 <= policy.delay(attempt) <= min(1.0, 0.1 * 2**attempt)
    asked = httpx.Response(503, headers={"retry-after": "0.3"})
    assert policy.delay(0, asked) == 0.3
    assert policy.delay(0, httpx.Response(503, headers={"retry-after": "3600"})) == 1.0


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        (httpx.Response(404, json={"detail": "no run 'x'"}), "no run 'x'"),
        (httpx.Response(422, json={"detail": [{"loc": ["a"]}]}), '[{"loc":["a"]}]'),
        (httpx.Response(500, json=["not", "a", "mapping"]), '["not","a","mapping"]'),
        (httpx.Response(401, text="<html>\n login </html>"), "<html> login </html>"),
    ],
)
def test_an_error_answer_is_an_api_error_with_its_detail(
    response: httpx.Response, detail: str
) -> None:
    error = error_of(response)
    assert type(error) is ApiError
    assert (error.status, error.detail) == (response.status_code, detail)
    assert str(error) == f"{response.status_code}: {detail}"


def test_unavailable_answers_are_unreachable_and_successes_are_their_json() -> None:
    assert isinstance(error_of(httpx.Response(503, text="busy")), Unreachable)
    with pytest.raises(ApiError):
        content_of(httpx.Response(409, json={"detail": "taken"}))
    assert content_of(httpx.Response(200, json={"a": 1})) == {"a": 1}
    assert content_of(httpx.Response(204)) is None
