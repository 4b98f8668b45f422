"""The website's rendering helpers: dates as <time> (UTC without scripts), commands with their
quoting, the charts' SVG and their text alternatives, and the pages' links; all escaped."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from starlette.requests import Request

from orchestra.domain.pages import Listing
from orchestra.domain.trends import DayRate, RunBar, day_rates
from orchestra.web.site.charts import job_chart, project_chart
from orchestra.web.site.paging import page_link
from orchestra.web.site.render import environment, shell_words, time_tag

WHEN = datetime(2026, 12, 6, 8, 51, 9, 123456, tzinfo=UTC)


def test_time_tag_is_utc_text_with_a_machine_date_and_a_utc_title() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert str(time_tag(local)) == (
        '<time datetime="2026-12-06T08:51:09Z" title="2026-12-06 08:51:09 UTC">'
        "2026-12-06 08:51:09 UTC</time>"
    )
    assert str(time_tag(None)) == "—"
    rendered = environment.from_string("{{ when|time }}").render(when=WHEN)
    assert rendered.startswith('<time datetime="2026-12-06T08:51:09Z"')


def test_commands_show_their_quoting_and_are_escaped() -> None:
    command = ["sh", "-c", "echo 'a b' <b>$HOME</b>", "two words", ""]
    assert shell_words(command) == ("sh -c 'echo '\"'\"'a b'\"'\"' <b>$HOME</b>' 'two words' ''")
    rendered = environment.from_string("<code>{{ c|shell }}</code>").render(c=command)
    assert "<b>" not in rendered and "&lt;b&gt;$HOME&lt;/b&gt;" in rendered
    assert "&#39;two words&#39;" in rendered


def bar(identifier: str, status: str, seconds: float | None, minute: int = 0) -> RunBar:
    return RunBar(identifier, status, WHEN + timedelta(minutes=minute), seconds)


def test_job_chart_draws_a_bar_per_run_tall_as_it_lasted_newest_at_the_right() -> None:
    bars = [
        bar("a" * 36, "succeeded", 10.0),
        bar("b" * 36, "failed", 40.0, 1),
        bar("c" * 36, "cancelled", None, 2),
    ]
    chart = job_chart("p", bars, 5)
    assert chart is not None
    svg = str(chart.svg)
    assert 'role="group"' in svg and 'aria-describedby="job-trend-summary"' in svg
    assert 'viewBox="0 0 70 100"' in svg  # five slots of 14
    rects = re.findall(
        r'<rect class="bar s-(\w+)" x="([\d.]+)" y="([\d.]+)" [^>]*height="([\d.]+)"', svg
    )
    assert [r[0] for r in rects] == ["succeeded", "failed", "cancelled"]
    assert [float(r[1]) for r in rects] == [30.0, 44.0, 58.0]  # two empty slots on the left
    heights = [float(r[3]) for r in rects]
    assert heights[1] == 96.0 and heights[0] == 24.0 and heights[2] == 3.0  # a stub
    assert 'href="/projects/p/runs/' + "b" * 36 + '"' in svg
    assert "<title>Run bbbbbbbb: failed in 40 s, created 2026-12-06 08:52 UTC</title>" in svg
    assert 'tabindex="-1" aria-label="Run aaaaaaaa: succeeded in 10 s, created' in svg
    assert chart.summary == (
        "The last 3 runs, oldest on the left: 1 cancelled, 1 failed, 1 succeeded."
        " Durations from 10 s to 40 s, median 25 s; the newest took 40 s."
    )
    assert job_chart("p", []) is None


def test_project_chart_splits_each_day_into_succeeded_and_the_rest() -> None:
    counts = {
        "2026-12-05": {"succeeded": 3, "failed": 1, "cancelled": 7},
        "2026-12-06": {"succeeded": 2},
    }
    days = day_rates(counts, date(2026, 12, 6), 3)
    assert days == [
        DayRate(date(2026, 12, 4), 0, 0),
        DayRate(date(2026, 12, 5), 4, 3),
        DayRate(date(2026, 12, 6), 2, 2),
    ]
    chart = project_chart(days)
    assert chart is not None
    svg = str(chart.svg)
    assert svg.count('class="none"') == 1  # a day without runs
    assert "<title>2026-12-05: 3 of 4 runs succeeded (75%)</title>" in svg
    assert 'class="bar s-succeeded" x="16.0" y="25.0" width="10" height="75.0"' in svg
    assert chart.summary == (
        "Success rate by day (UTC) over the last 3 days, oldest on the left: 83% of 6 runs"
        " succeeded. Lowest: 75% on 2026-12-05; latest day with runs: 100% on 2026-12-06."
    )
    assert project_chart(day_rates({}, date(2026, 12, 6), 3)) is None


def request_for(query: bytes) -> Request:
    return Request(
        {"type": "http", "path": "/projects/p/runs", "query_string": query, "headers": []}
    )


def test_page_links_keep_the_filters_and_change_the_cursor() -> None:
    request = request_for(b"status=failed&cursor=abc&message=Run+triggered.&job=a%26b")
    assert page_link(request, "~xyz") == "/projects/p/runs?status=failed&job=a%26b&cursor=~xyz"
    assert page_link(request, None) == "/projects/p/runs?status=failed&job=a%26b"
    assert page_link(request_for(b""), None) == "/projects/p/runs"


def test_a_listing_unpacks_as_before_and_keeps_its_previous_cursor() -> None:
    found = Listing([1, 2], "next", "~previous")
    items, next_cursor = found
    assert (items, next_cursor) == ([1, 2], "next")
    converted = found.map(str)
    assert converted.items == ["1", "2"] and converted.previous_cursor == "~previous"
    assert found.cursors() == {"next_cursor": "next", "previous_cursor": "~previous"}
