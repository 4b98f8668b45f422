"""Jinja2 rendering for the website: autoescape on, and the few filters the pages need."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from orchestra import __version__
from orchestra.domain.permissions import Action, allowed
from orchestra.web.site.paging import page_link

TEMPLATES = Path(__file__).parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def format_date(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shell_words(command: list[str]) -> str:
    """A command's arguments as a POSIX shell would read them back (`shlex.join`): an argument
    with a space or a quote is quoted, so none is mistaken for two. Escaped as any text."""
    return shlex.join(str(argument) for argument in command)


def time_tag(value: datetime | None) -> Markup:
    """A date as `<time>`: its text and title in UTC (what a browser without scripts shows),
    turned into the viewer's time zone by static/times.js, the title keeping UTC."""
    if value is None:
        return Markup("—")
    utc = value.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"), format_date(utc), format_date(utc)
    )


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    return duration_text(((end or datetime.now(UTC)) - start).total_seconds())


def duration_text(seconds: float) -> str:
    """A number of seconds as people read it: "4.2 s", "3 min 05 s", "2 h 10 min"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


environment.filters["date"] = format_date
environment.filters["ago"] = _ago
environment.filters["time"] = time_tag
environment.filters["shell"] = shell_words
environment.globals["duration"] = duration
environment.globals["page_link"] = page_link
environment.globals["version"] = __version__


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with the caller, their permissions and the CSRF token in context."""
    caller = getattr(request.state, "caller", None)
    page_project = request.path_params.get("project")

    def can(action: str, project: str | None = None) -> bool:
        """May the caller do this, in `project` (by default the page's own, if any)?"""
        if caller is None:
            return allowed(None, Action(action))
        return bool(caller.access.may(Action(action), project or page_project))

    html = environment.get_template(template).render(
        request=request,
        caller=caller,
        can=can,
        csrf_token=getattr(request.state, "csrf_token", ""),
        **context,
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                "base-uri 'none'; form-action 'self'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )
