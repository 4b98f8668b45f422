"""The website's error pages: an address no route answers, or a method none takes, is a page
with a title and a language (as every page), while the API's answers stay JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from orchestra.services.container import Services
from orchestra.web.app import create_app
from orchestra.web.site.pages import install_site, site_router


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services, site=(site_router(), install_site))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_an_unknown_address_is_a_page_with_a_title_and_a_language(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/no/such/<page>")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in answer.text
    assert "<title>Not found · Orchestra</title>" in answer.text
    assert "There is no such page." in answer.text
    assert "<page>" not in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]


async def test_a_method_no_route_takes_is_a_page_too(client: httpx.AsyncClient) -> None:
    answer = await client.put("/login")
    assert answer.status_code == 405
    assert "<title>Something is wrong · Orchestra</title>" in answer.text
    assert "Method Not Allowed" in answer.text


async def test_the_api_still_answers_json(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/no/such/route")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not Found"}
    answer = await client.put("/api/v1/health")
    assert answer.status_code == 405
    assert answer.json() == {"detail": "Method Not Allowed"}
