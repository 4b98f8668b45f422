"""Pagination both ways: every page of a list knows the cursor of the page before it
(`previous_cursor`, given back as `cursor`), on newest-first lists (runs, audit) and ordered
ones (projects, users) alike; and the website's lists link their pages both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestra.services.container import Services
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth
from tests.integration.test_pagination import insert_runs_at, setup_project


async def walk(
    api: RecordingClient, path: str, token: str, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    params: dict[str, str | int] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    response = await api.get(path, params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def names(page: dict[str, Any]) -> list[str]:
    return [str(item.get("identifier", item.get("name"))) for item in page["items"]]


async def check_both_ways(api: RecordingClient, path: str, token: str, limit: int) -> int:
    """Walk the list forwards, then back from its last page to its first: the same pages,
    each with the cursors that lead to its neighbours. The number of pages."""
    forward = [await walk(api, path, token, limit)]
    assert forward[0]["previous_cursor"] is None  # the first page
    while forward[-1]["next_cursor"]:
        page = await walk(api, path, token, limit, forward[-1]["next_cursor"])
        assert page["previous_cursor"], "a page after the first leads back"
        forward.append(page)
    assert len(forward) >= 3
    everything = [name for page in forward for name in names(page)]
    assert len(everything) == len(set(everything))
    page = forward[-1]
    for index in range(len(forward) - 2, -1, -1):
        page = await walk(api, path, token, limit, page["previous_cursor"])
        assert names(page) == names(forward[index]), f"page {index} read backwards"
        if index:
            # A page reached backwards leads forwards to the page after it, and back again.
            after = await walk(api, path, token, limit, page["next_cursor"])
            assert names(after) == names(forward[index + 1])
    assert page["previous_cursor"] is None  # back at the first page
    return len(forward)


async def test_runs_page_both_ways_even_among_runs_created_at_one_moment(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    await setup_project(services)
    await insert_runs_at(services, 7, datetime(2020, 1, 1, tzinfo=UTC))  # one date: ids order
    for index in range(6):
        await services.runs.trigger("p", "other" if index % 2 else "j", {}, {"type": "t"})
    assert await check_both_ways(api, "/api/v1/projects/p/runs", viewer, 4) == 4
    # A filter holds both ways too.
    filtered = (
        await api.get(
            "/api/v1/projects/p/runs", params={"job": "j", "limit": 3}, headers=auth(viewer)
        )
    ).json()
    second = await api.get(
        "/api/v1/projects/p/runs",
        params={"job": "j", "limit": 3, "cursor": filtered["next_cursor"]},
        headers=auth(viewer),
    )
    back = await api.get(
        "/api/v1/projects/p/runs",
        params={"job": "j", "limit": 3, "cursor": second.json()["previous_cursor"]},
        headers=auth(viewer),
    )
    assert names(back.json()) == names(filtered)
    assert {r["job"] for r in second.json()["items"]} == {"j"}


async def test_backwards_to_a_short_start_gives_the_first_page_whole(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    await setup_project(services)
    for _ in range(7):
        await services.runs.trigger("p", "j", {}, {"type": "t"})
    first = await walk(api, "/api/v1/projects/p/runs", viewer, 5)
    # The way back from a page two runs down (pages of two) is the first page, five runs long
    # when asked for five: not the two runs before it alone.
    two = await walk(api, "/api/v1/projects/p/runs", viewer, 2)
    second = await walk(api, "/api/v1/projects/p/runs", viewer, 2, two["next_cursor"])
    back = await walk(api, "/api/v1/projects/p/runs", viewer, 5, second["previous_cursor"])
    assert names(back) == names(first)
    assert back["previous_cursor"] is None
    # Past the end: no item, and the way back still there.
    last = await walk(api, "/api/v1/projects/p/runs", viewer, 5, first["next_cursor"])
    assert last["next_cursor"] is None and len(last["items"]) == 2
    assert last["previous_cursor"]


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/users", "/api/v1/audit"])
async def test_ordered_lists_page_both_ways(
    services: Services, api: RecordingClient, make_user: MakeUser, path: str
) -> None:
    admin = await make_user("admin", ["administrator"])
    for index in range(7):
        await services.projects.create_project({"identifier": f"project-{index}"})
        await make_user(f"user-{index}", ["viewer"])
        # Each a change through the API: the audit log has a line for each.
        response = await api.put(f"/api/v1/projects/project-{index}", json={}, headers=auth(admin))
        assert response.status_code in (200, 201), response.text
    assert await check_both_ways(api, path, admin, 3) >= 3


async def test_a_backward_cursor_that_is_not_one_is_refused(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    await setup_project(services)
    for cursor in ("~", "~garbage!", "~W10", "~~WzEsMl0"):
        response = await api.get(
            "/api/v1/projects/p/runs", params={"cursor": cursor}, headers=auth(viewer)
        )
        assert response.status_code in (400, 422), (cursor, response.text)
        assert "cursor" in response.json()["detail"]
