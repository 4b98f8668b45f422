"""A run's log read with its lines' times and searched (issue 24, item 5), with a real worker on
each engine: the plain log stays the bytes the steps wrote; `?timestamps=true` puts the worker's
time before each line; `?search=` finds lines like `grep -n`; the website draws the same lines
escaped, numbered and coloured."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tests.support.cluster import Cluster
from tests.support.jobs import py

FIRST = """
    import time
    print("\\x1b[1;31mERROR\\x1b[0m <b>one</b>", flush=True)
    time.sleep(0.3)
    print("two & three", flush=True)
    print("no newline", end="", flush=True)
"""
SECOND = "print('Error again')"
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$")


def test_log_with_timestamps_search_and_the_website_view(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    api.put_job(
        "colours",
        [{"name": "first", "command": py(FIRST)}, {"name": "second", "command": py(SECOND)}],
    )
    before = datetime.now().astimezone()
    run = api.trigger("colours")
    api.wait_for_status(run, "succeeded")
    path = f"/projects/p/runs/{run['identifier']}/log"

    plain = api.log(run)
    expected = b"\x1b[1;31mERROR\x1b[0m <b>one</b>\ntwo & three\nno newlineError again\n"
    assert plain == expected  # byte for byte, as before

    stamped = api.request("GET", path, 200, params={"timestamps": "true"}).content
    lines = stamped.split(b"\n")
    assert lines[-1] == b""
    found = [STAMP.match(line) for line in lines[:-1]]
    assert all(found), stamped
    assert b"\n".join(m[2] for m in found if m) + b"\n" == expected
    times = [datetime.fromisoformat(m[1].decode().replace("Z", "+00:00")) for m in found if m]
    assert before - timedelta(seconds=5) <= times[0] <= datetime.now().astimezone()
    assert times[1] - times[0] >= timedelta(seconds=0.2)  # read after the step's sleep

    followed = api.request(
        "GET", path, 200, params={"timestamps": "true", "follow": "true"}
    ).content
    assert followed == stamped  # a final run's followed log ends at once, the same
    assert (
        api.request("GET", path, 200, params={"timestamps": "true", "offset": 4}).content
        == (stamped.split(b" ", 1)[0] + b" " + expected[4:].split(b"\n", 1)[0] + b"\n")
        + stamped.split(b"\n", 1)[1]
    )

    step = api.request(
        "GET",
        f"/projects/p/runs/{run['identifier']}/steps/1/log",
        200,
        params={"timestamps": "true"},
    ).content
    assert STAMP.match(step.rstrip(b"\n")) and step.endswith(b" Error again\n"), step

    searched = api.request("GET", path, 200, params={"search": "error"}).content
    assert searched == b"1:ERROR <b>one</b>\n3:no newlineError again\n"
    assert api.request("GET", path, 200, params={"search": "absent"}).content == b""
    api.request("GET", path, 422, params={"search": ""})
    api.request("GET", path, 422, params={"search": "x" * 201})
    api.request(
        "GET",
        "/projects/p/runs/00000000-0000-0000-0000-000000000000/log",
        404,
        params={"timestamps": "true"},
    )

    # The website: escaped, coloured, numbered over the whole log; the search's matches marked.
    page = _page(cluster, f"/projects/p/runs/{run['identifier']}")
    assert "<b>one</b>" not in page and "&lt;b&gt;one&lt;/b&gt;" in page
    assert '<span class="a-fg-red a-bold">ERROR</span>' in page
    assert 'id="L4"' in page and 'id="L5"' not in page  # the second step goes on at line 4
    found_page = _page(cluster, f"/projects/p/runs/{run['identifier']}?search=error")
    assert found_page.count("<mark>") == 2 and 'id="L2"' not in found_page

    # The page's script asks for lines after those drawn: JSON, escaped, numbered on.
    lines = cluster.api.http.get(
        f"{cluster.url}/projects/p/runs/{run['identifier']}/log/lines",
        params={"step": 1, "offset": 0, "line": 4, "style": "1;31"},
    ).json()
    assert lines["done"] is True and lines["line"] == 5
    assert '<span class="a-fg-red a-bold">Error again</span>' in lines["html"]
    for bad in ({"step": 9}, {"step": 0, "line": 0}, {"step": 0, "offset": -1}, {}):
        answer = cluster.api.http.get(
            f"{cluster.url}/projects/p/runs/{run['identifier']}/log/lines", params=bad
        )
        assert answer.status_code in (404, 422), (bad, answer.status_code)
    # A run cancelled before it started: nothing more will come, and the page is told so.
    api.put_job("nowhere", [py("print('never')")], properties={"gpu": "none-such"})
    waiting = api.trigger("nowhere")
    api.request("POST", f"/projects/p/runs/{waiting['identifier']}/cancel", 200)
    cancelled = cluster.api.http.get(
        f"{cluster.url}/projects/p/runs/{waiting['identifier']}/log/lines", params={"step": 0}
    ).json()
    assert cancelled == {"html": "", "offset": 0, "line": 1, "style": "", "done": True}


def _page(cluster: Cluster, path: str) -> str:
    response = cluster.api.http.request(
        "GET", f"{cluster.url}{path}", headers={"Accept": "text/html"}
    )
    assert response.status_code == 200, response.text[:500]
    return response.text
