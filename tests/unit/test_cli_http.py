"""orchestra.cli.http: which answers `--follow` waits out (a proxy or the server unavailable for
now) and which end the command."""

from __future__ import annotations

import httpx
import pytest

from orchestra.cli.http import Unreachable, _check
from orchestra.errors import OrchestraError


@pytest.mark.parametrize("status", [502, 503, 504])
def test_unavailable_for_now_is_unreachable(status: int) -> None:
    with pytest.raises(Unreachable, match=f"{status}: bad gateway"):
        _check(httpx.Response(status, text="bad gateway"))


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(404, json={"detail": "no run 'x'"}), "404: no run 'x'"),
        (httpx.Response(500, json=["not", "a", "mapping"]), '500: ["not","a","mapping"]'),
        (httpx.Response(401, text="<html>login</html>"), "401: <html>login</html>"),
    ],
)
def test_other_errors_end_the_command(response: httpx.Response, message: str) -> None:
    with pytest.raises(OrchestraError) as raised:
        _check(response)
    assert not isinstance(raised.value, Unreachable)
    assert str(raised.value) == message


def test_success_passes() -> None:
    _check(httpx.Response(200, json={}))
    _check(httpx.Response(204))
