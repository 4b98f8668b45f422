"""The website's charts, drawn on the server as SVG (no script, nothing a Content-Security-Policy
refuses): a job's recent runs as bars, tall as they lasted and coloured by status (as Jenkins'
build trend), and a project's success rate by day. Each comes with its text alternative, a
sentence that says what the chart shows, read by screen readers and shown under it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from markupsafe import Markup, escape

from orchestra.domain.trends import DayRate, RunBar
from orchestra.web.site.render import duration_text

HEIGHT = 100  # the drawing's units; CSS sets its size on the page
SLOT = 14  # a bar and the gap after it
BAR = 10
STUB = 3  # the height of a bar with no duration (a run that never started)


@dataclass(frozen=True)
class Chart:
    identifier: str  # the SVG's id; its summary's is this and "-summary"
    svg: Markup
    summary: str


def job_chart(project: str, bars: list[RunBar], slots: int = 30) -> Chart | None:
    """The job's runs, oldest on the left and the newest at the right end, in a frame of
    `slots` bars (fewer runs leave the left empty, so a bar keeps its width): each bar links
    to its run."""
    if not bars:
        return None
    slots = max(slots, len(bars))
    offset = (slots - len(bars)) * SLOT
    longest = max((b.seconds or 0.0 for b in bars), default=0.0) or 1.0
    parts = []
    for index, bar in enumerate(bars):
        height = max(round((bar.seconds or 0.0) / longest * (HEIGHT - 4), 2), STUB)
        label = f"Run {bar.identifier[:8]}: {bar.status}" + (
            f" in {duration_text(bar.seconds)}" if bar.seconds is not None else ""
        )
        label += bar.creation_date.strftime(", created %Y-%m-%d %H:%M UTC")
        parts.append(
            Markup(
                '<a href="/projects/{}/runs/{}" tabindex="-1" aria-label="{}"><title>{}</title>'
                '<rect class="bar s-{}" x="{}" y="{}" width="{}" height="{}"></rect></a>'
            ).format(
                project,
                bar.identifier,
                label,
                label,
                bar.status,
                offset + index * SLOT + (SLOT - BAR) / 2,
                HEIGHT - height,
                BAR,
                height,
            )
        )
    label = "Chart of the job's last runs: how long each lasted, coloured by its status"
    return Chart("job-trend", _svg(slots * SLOT, label, "job-trend", parts), _job_summary(bars))


def _job_summary(bars: list[RunBar]) -> str:
    counts: dict[str, int] = {}
    for bar in bars:
        counts[bar.status] = counts.get(bar.status, 0) + 1
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=_most))
    if len(bars) == 1:
        text = f"One run: {statuses}."
    else:
        text = f"The last {len(bars)} runs, oldest on the left: {statuses}."
    timed = [b.seconds for b in bars if b.seconds is not None]
    if len(timed) == 1:
        text += f" It took {duration_text(timed[0])}."
    elif timed:
        text += (
            f" Durations from {duration_text(min(timed))} to {duration_text(max(timed))},"
            f" median {duration_text(statistics.median(timed))}; the newest took"
            f" {duration_text(timed[-1])}."
        )
    return text


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def project_chart(days: list[DayRate]) -> Chart | None:
    """The share of runs that succeeded each day (UTC), oldest on the left: the green part of
    a bar is the share that succeeded, the red part the rest; a day without runs has none."""
    if not any(day.ran for day in days):
        return None
    parts = []
    for index, day in enumerate(days):
        x = index * SLOT + (SLOT - BAR) / 2
        if day.rate is None:
            parts.append(
                Markup('<rect class="none" x="{}" y="{}" width="{}" height="1"></rect>').format(
                    x, HEIGHT - 1, BAR
                )
            )
            continue
        good = round(day.rate * HEIGHT, 2)
        title = f"{day.day.isoformat()}: {day.succeeded} of {day.ran} runs succeeded"
        title += f" ({day.rate:.0%})"
        parts.append(
            Markup(
                '<g><title>{}</title><rect class="bar s-failed" x="{}" y="0" width="{}" '
                'height="{}"></rect><rect class="bar s-succeeded" x="{}" y="{}" width="{}" '
                'height="{}"></rect></g>'
            ).format(title, x, BAR, HEIGHT - good, x, HEIGHT - good, BAR, good)
        )
    label = "Chart of the project's success rate by day"
    svg = _svg(len(days) * SLOT, label, "project-trend", parts)
    return Chart("project-trend", svg, _project_summary(days))


def _project_summary(days: list[DayRate]) -> str:
    ran = sum(d.ran for d in days)
    succeeded = sum(d.succeeded for d in days)
    active = [d for d in days if d.rate is not None]
    text = (
        f"Success rate by day (UTC) over the last {len(days)} days, oldest on the left:"
        f" {succeeded / ran:.0%} of {ran} runs succeeded."
    )
    if len(active) == 1:
        return text + f" All on {active[0].day.isoformat()}."
    worst = min(active, key=lambda d: (d.rate, d.day))
    text += f" Lowest: {worst.rate:.0%} on {worst.day.isoformat()};"
    text += f" latest day with runs: {active[-1].rate:.0%} on {active[-1].day.isoformat()}."
    return text


def _svg(width: int, label: str, identifier: str, parts: list[Markup]) -> Markup:
    """The drawing, named by `label` and described by its summary (chart.html shows it): a
    group, not an image, whose bars may be links (an image's content is presentational). The
    bars' links are left out of the tab order: the same runs are listed, as links, below."""
    return Markup(
        '<svg class="chart" id="{0}" viewBox="0 0 {1} {2}" preserveAspectRatio="none" '
        'role="group" aria-label="{3}" aria-describedby="{0}-summary" '
        'xmlns="http://www.w3.org/2000/svg">{4}</svg>'
    ).format(identifier, width, HEIGHT, label, Markup("").join(escape(p) for p in parts))
