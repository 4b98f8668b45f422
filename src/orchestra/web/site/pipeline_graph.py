"""A pipeline's graph as inline SVG: nodes in columns by depth (a node one column right of its
deepest need), in their topological order down each column, with an arrow from each need to
the node that needs it. Every text is escaped here; the colours are the stylesheet's
(`.pipeline-graph` in static/app.css), by node kind and, for a pipeline run's page, by status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

from orchestra.domain.pipelines import levels, topological_order

BOX_WIDTH = 168
BOX_HEIGHT = 46
COLUMN_GAP = 64
ROW_GAP = 18
MARGIN = 8
# Characters shown in a box (its name, its kind and status); the whole text is in its tooltip.
MAX_NAME = 19
MAX_DETAIL = 26
_STATUS = re.compile(r"[a-z]{1,20}")


def pipeline_svg(
    nodes: Sequence[Mapping[str, Any]],
    statuses: Mapping[str, str] | None = None,
    link: str | None = None,
    links: Mapping[str, str] | None = None,
) -> Markup:
    """The drawing of these nodes (a pipeline's or a pipeline run's copy); `statuses` colours
    each node by its status; `link`, with `{node}` in it, makes each box a link; `links` makes
    the boxes it names links to the paths it gives (a pipeline run's nodes to their runs)."""
    by_identifier = {n["identifier"]: n for n in nodes}
    depth = levels(nodes)
    columns: dict[int, list[str]] = {}
    for identifier in topological_order(nodes):
        columns.setdefault(depth[identifier], []).append(identifier)
    position: dict[str, tuple[int, int]] = {}
    for column, members in columns.items():
        for row, identifier in enumerate(members):
            x = MARGIN + column * (BOX_WIDTH + COLUMN_GAP)
            y = MARGIN + row * (BOX_HEIGHT + ROW_GAP)
            position[identifier] = (x, y)
    width = 2 * MARGIN + len(columns) * BOX_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    rows = max((len(m) for m in columns.values()), default=0)
    height = 2 * MARGIN + rows * BOX_HEIGHT + max(rows - 1, 0) * ROW_GAP
    parts = [
        f'<svg class="pipeline-graph" xmlns="http://www.w3.org/2000/svg" role="group" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="The pipeline\'s nodes and their needs">',
        '<defs><marker id="pipeline-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="pipeline-arrowhead"/></marker></defs>',
    ]
    for identifier in topological_order(nodes):
        for need in by_identifier[identifier].get("needs", ()):
            parts.append(_edge(need, identifier, position[need], position[identifier]))
    for identifier in topological_order(nodes):
        status = (statuses or {}).get(identifier)
        href = (links or {}).get(identifier)
        if href is None and link is not None:
            href = link.replace("{node}", identifier)
        parts.append(_box(by_identifier[identifier], position[identifier], status, href))
    parts.append("</svg>")
    return Markup("".join(parts))


def _edge(source: str, target: str, start: tuple[int, int], end: tuple[int, int]) -> str:
    x1, y1 = start[0] + BOX_WIDTH, start[1] + BOX_HEIGHT // 2
    x2, y2 = end[0], end[1] + BOX_HEIGHT // 2
    middle = (x1 + x2) // 2
    return (
        f'<path class="pipeline-edge" data-from="{escape(source)}" data-to="{escape(target)}" '
        f'd="M {x1} {y1} C {middle} {y1}, {middle} {y2}, {x2} {y2}" fill="none" stroke="gray" '
        'marker-end="url(#pipeline-arrow)"/>'
    )


def _box(node: Mapping[str, Any], at: tuple[int, int], status: str | None, href: str | None) -> str:
    identifier = str(node["identifier"])
    kind = "approval" if node.get("approval") is not None else "job"
    detail = "approval" if kind == "approval" else f"job {node.get('job')}"
    if node.get("when", "success") != "success":
        detail += f" · when {node['when']}"
    classes = f"pipeline-node node-{kind}"
    shown_status = status if status is not None and _STATUS.fullmatch(status) else None
    if shown_status:
        classes += f" status-{shown_status}"
        detail = f"{shown_status} · {detail}"
    x, y = at
    title = f"{identifier} ({detail})"
    box = (
        f'<g class="{classes}" data-node="{escape(identifier)}">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
        'fill="white" stroke="gray"/>'
        f'<text x="{x + 10}" y="{y + 19}" class="pipeline-node-name">'
        f"{escape(_short(identifier, MAX_NAME))}</text>"
        f'<text x="{x + 10}" y="{y + 37}" class="pipeline-node-detail">'
        f"{escape(_short(detail, MAX_DETAIL))}</text></g>"
    )
    if href is None:
        return box
    return f'<a href="{escape(href)}">{box}</a>'


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
