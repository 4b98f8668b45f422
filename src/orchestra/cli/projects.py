"""`orchestra project list|show|create|update|enable|disable|delete`."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestra.cli.common import FileOption, Format, Output, ProjectArg, read_body
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item

app = typer.Typer(help="Projects: list, show, create, change, delete.", no_args_is_help=True)
DisplayName = Annotated[str | None, typer.Option(help="its name as people read it")]
COLUMNS = ("identifier", "display_name", "is_enabled", "concurrency")


def _path(project: str) -> str:
    return f"/projects/{project}"


@app.command("list")
def list_projects(output: Output = Format.text) -> None:
    """List the projects you may read."""
    list_items("/projects", output, COLUMNS)


@app.command("show")
def show(project: ProjectArg, output: Output = Format.text) -> None:
    """Show a project."""
    show_item(_path(project), output)


@app.command("create")
def create(
    project: ProjectArg,
    display_name: DisplayName = None,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Create a project (its fields from options, or a file)."""
    body = read_body(file, {"identifier": project, "display_name": display_name})
    write_item("POST", "/projects", body, output, f"project {project} created")


@app.command("update")
def update(
    project: ProjectArg,
    display_name: DisplayName = None,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Change the fields given of a project (PATCH)."""
    body = read_body(file, {"display_name": display_name})
    write_item("PATCH", _path(project), body, output, f"project {project} updated")


@app.command("enable")
def enable(project: ProjectArg, output: Output = Format.text) -> None:
    """Enable a project: its runs may start."""
    set_enabled(_path(project), True, output, f"project {project}")


@app.command("disable")
def disable(project: ProjectArg, output: Output = Format.text) -> None:
    """Disable a project: its runs stay pending."""
    set_enabled(_path(project), False, output, f"project {project}")


@app.command("delete")
def delete(project: ProjectArg) -> None:
    """Delete a project, its jobs, schedules and runs."""
    delete_item(_path(project), f"project {project}")
