"""A run's log on the website: lines numbered with links, colours, times on request, search.

Every line is a `<span id="L12">` (numbered from 1 over the run's whole log, step after step)
holding a link to itself, its time (hidden unless the reader asks for times) and its text. The
text is the log's bytes decoded, ESCAPED, with terminal colours and bold as spans with classes
(domain/ansi.py): no markup of the log's ever reaches the page. A running step's last line is
shown once it is ended (by its newline, or by the step's end), so a line is never drawn half.

The run page renders the log it has (up to PREVIEW_BYTES); the page's script asks
`log/lines` for what follows, a step at a time and in order (a step's lines are numbered after
those of the steps before it), and gets the same rendering as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from markupsafe import Markup, escape

from orchestra.domain import ansi
from orchestra.domain.log_lines import Line, LineSplitter, matches, stamp
from orchestra.domain.models import Run
from orchestra.services.container import Services
from orchestra.services.run_logs import RunLogs

router = APIRouter()
PREVIEW_BYTES = 1 << 20  # of the log, drawn on the run page
LIVE_BYTES = 4 << 20  # of the log, sent at most in one answer to the page's script
MAX_MATCHES = 1000  # lines found by a search on the page


@dataclass
class StepLog:
    """One step's log as the run page draws it."""

    html: Markup = field(default_factory=Markup)
    size: int = 0  # bytes of the step's output drawn (whole lines only, while it runs)
    done: bool = False  # nothing more to fetch: the step ended and all of it is drawn
    cut: bool = False  # the page's budget ran out in it


@dataclass
class PageLog:
    steps: list[StepLog] = field(default_factory=list)
    next_line: int = 1  # the number of the next line to draw
    style: str = ""  # the terminal style in force after the last line drawn (ansi.Style)
    truncated: bool = False
    matches: int = 0  # with a search: the lines found (at most MAX_MATCHES are drawn)


def line_html(line: Line, style: ansi.Style, search: re.Pattern[str] | None) -> Markup:
    """One line as the page draws it (see the module's docstring); `style` in force at its
    start. Only text from `escape` and fixed markup go in."""
    parts, _ = ansi.segments(line.text, style)
    text = Markup("").join(_segment_html(s, t, search) for s, t in parts)
    date = line.date.isoformat() if line.date else ""
    return Markup(
        '<span class="ll" id="L{n}"><a class="ln" href="#L{n}">{n}</a>'
        '<span class="lt" data-utc="{d}" title="{t}">{t}</span>'
        '<span class="lx">{x}</span>\n</span>'
    ).format(n=line.number, d=date, t=stamp(line.date), x=text)


def _segment_html(style: ansi.Style, text: str, search: re.Pattern[str] | None) -> Markup:
    if search is None:
        body: Markup = escape(text)
    else:
        pieces = search.split(text)  # the pattern has one group: the matches are kept
        body = Markup("").join(
            Markup("<mark>{}</mark>").format(p) if i % 2 else escape(p)
            for i, p in enumerate(pieces)
        )
    classes = style.classes()
    if not classes:
        return body
    names = " ".join(f"a-{name}" for name in classes)
    return Markup('<span class="{}">{}</span>').format(names, body)


def search_pattern(search: str | None) -> re.Pattern[str] | None:
    return None if not search else re.compile(f"({re.escape(search)})", re.IGNORECASE)


async def page_log(services: Services, run: Run, search: str | None) -> PageLog:
    """The run's log as its page draws it: every step's lines up to PREVIEW_BYTES in all, or
    with `search`, only the lines that hold it (MAX_MATCHES at most, over the whole log)."""
    logs = RunLogs(services.runs)
    page = PageLog()
    style = ansi.PLAIN
    budget = PREVIEW_BYTES
    pattern = search_pattern(search)
    for step in run.steps:
        shown = StepLog()
        page.steps.append(shown)
        if page.truncated:
            continue
        # A final run has all its output stored, whatever its steps say (a cancelled run's
        # steps stay pending).
        final = step.status.is_final or run.status.is_final
        splitter = LineSplitter(number=page.next_line - 1)
        pieces: list[Markup] = []
        chunks = await logs.timed_chunks(run.project, run.identifier, 0, step.index)
        async for _, data, date in chunks:
            lines = list(splitter.feed(data, date))
            if search is None:
                budget -= len(data)
            style = _draw(lines, style, pattern, search, pieces, page)
            if search is None and budget <= 0:
                page.truncated = shown.cut = True
                break
        else:
            rest = splitter.rest() if final else None
            if rest is not None:
                style = _draw([rest], style, pattern, search, pieces, page)
            shown.done = final
        shown.html = Markup("").join(pieces)
        shown.size = splitter.consumed
        page.next_line = splitter.number + 1
        if not final:
            break  # the steps after a running one have no output yet
    page.style = style.encode()
    return page


def _draw(
    lines: list[Line],
    style: ansi.Style,
    pattern: re.Pattern[str] | None,
    search: str | None,
    pieces: list[Markup],
    page: PageLog,
) -> ansi.Style:
    for line in lines:
        if search is None:
            pieces.append(line_html(line, style, pattern))
        elif matches(line, search):
            page.matches += 1
            if page.matches <= MAX_MATCHES:
                pieces.append(line_html(line, style, pattern))
        _, style = ansi.segments(line.text, style)
    return style


Offset = Annotated[int, Query(ge=0, le=2**62)]


@router.get("/projects/{project}/runs/{run}/log/lines")
async def log_lines(
    request: Request,
    project: str,
    run: str,
    step: Annotated[int, Query(ge=0, le=10_000)],
    offset: Offset = 0,
    line: Annotated[int, Query(ge=1, le=2**53)] = 1,
    style: Annotated[str, Query(max_length=64)] = "",
) -> JSONResponse:
    """A step's lines from byte `offset` of its output, numbered from `line`, with the
    terminal `style` in force there: `{html, offset, line, style, done}` for the next call."""
    services: Services = request.app.state.services
    found = await services.runs.get_run(project, run)
    final = found.status.is_final or (step < len(found.steps) and found.steps[step].status.is_final)
    splitter = LineSplitter(number=line - 1)
    current = ansi.decode(style)
    pieces: list[Markup] = []
    page = PageLog()
    read = 0
    chunks = await RunLogs(services.runs).timed_chunks(project, run, offset, step)
    async for _, data, date in chunks:
        current = _draw(list(splitter.feed(data, date)), current, None, None, pieces, page)
        read += len(data)
        if read >= LIVE_BYTES:
            final = False  # the rest at the next call
            break
    else:
        rest = splitter.rest() if final else None
        if rest is not None:
            current = _draw([rest], current, None, None, pieces, page)
    return JSONResponse(
        {
            "html": str(Markup("").join(pieces)),
            "offset": offset + splitter.consumed,
            "line": splitter.number + 1,
            "style": current.encode(),
            "done": final,
        },
        headers={"Cache-Control": "no-store"},
    )
