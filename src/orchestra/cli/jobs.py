"""`orchestra job list|show|create|update|enable|disable|delete|trigger`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestra.cli import runs
from orchestra.cli.common import FileOption, Format, Output, ProjectArg, read_body
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item

app = typer.Typer(
    help="Jobs of a project: list, show, create, change, delete.", no_args_is_help=True
)
JobArg = Annotated[str, typer.Argument(help="the job's identifier")]
JobFile = Annotated[
    Path,
    typer.Option("--file", "-f", help="the job's fields, as YAML or JSON (as the API takes them)"),
]
COLUMNS = ("identifier", "display_name", "is_enabled", "priority", "update_date")


def _path(project: str, job: str | None = None) -> str:
    return f"/projects/{project}/jobs" + ("" if job is None else f"/{job}")


@app.command("list")
def list_jobs(project: ProjectArg, output: Output = Format.text) -> None:
    """List a project's jobs."""
    list_items(_path(project), output, COLUMNS)


@app.command("show")
def show(project: ProjectArg, job: JobArg, output: Output = Format.text) -> None:
    """Show a job."""
    show_item(_path(project, job), output)


@app.command("create")
def create(project: ProjectArg, job: JobArg, file: JobFile, output: Output = Format.text) -> None:
    """Create a job from a file of its fields (steps, parameters...)."""
    body = read_body(file, {"identifier": job})
    write_item("POST", _path(project), body, output, f"job {job} created")


@app.command("update")
def update(
    project: ProjectArg,
    job: JobArg,
    file: FileOption = None,
    display_name: Annotated[str | None, typer.Option(help="its name as people read it")] = None,
    description: Annotated[str | None, typer.Option(help="what it does")] = None,
    output: Output = Format.text,
) -> None:
    """Change the fields given of a job (PATCH)."""
    body = read_body(file, {"display_name": display_name, "description": description})
    write_item("PATCH", _path(project, job), body, output, f"job {job} updated")


@app.command("enable")
def enable(project: ProjectArg, job: JobArg, output: Output = Format.text) -> None:
    """Enable a job: its runs may start."""
    set_enabled(_path(project, job), True, output, f"job {job}")


@app.command("disable")
def disable(project: ProjectArg, job: JobArg, output: Output = Format.text) -> None:
    """Disable a job: its runs stay pending."""
    set_enabled(_path(project, job), False, output, f"job {job}")


@app.command("delete")
def delete(project: ProjectArg, job: JobArg) -> None:
    """Delete a job."""
    delete_item(_path(project, job), f"job {job}")


app.command("trigger")(runs.trigger)
