"""`orchestra schedule list|show|create|update|enable|disable|delete`."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestra.cli.common import FileOption, Format, Output, ProjectArg, key_values, read_body
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item

app = typer.Typer(
    help="Schedules of a project: list, show, create, change, delete.", no_args_is_help=True
)
ScheduleArg = Annotated[str, typer.Argument(help="the schedule's identifier")]
Job = Annotated[str | None, typer.Option(help="the job it triggers")]
Pipeline = Annotated[str | None, typer.Option(help="the pipeline it triggers (instead of a job)")]
Expression = Annotated[
    str | None, typer.Option(metavar="CRON", help="five fields, or @hourly, @daily...")
]
TimeZone = Annotated[str | None, typer.Option(metavar="ZONE", help="e.g. Europe/Paris")]
Parameters = Annotated[
    list[str] | None, typer.Option("--parameter", "-p", metavar="KEY=VALUE", help="repeat")
]
COLUMNS = ("identifier", "job", "pipeline", "expression", "is_enabled", "next_due_dates")


def _path(project: str, schedule: str | None = None) -> str:
    return f"/projects/{project}/schedules" + ("" if schedule is None else f"/{schedule}")


def _fields(
    job: str | None,
    pipeline: str | None,
    expression: str | None,
    time_zone: str | None,
    parameter: list[str] | None,
) -> dict[str, object]:
    return {
        "job": job,
        "pipeline": pipeline,
        "expression": expression,
        "time_zone": time_zone,
        "parameters": key_values(parameter, "--parameter") if parameter else None,
    }


@app.command("list")
def list_schedules(project: ProjectArg, output: Output = Format.text) -> None:
    """List a project's schedules."""
    list_items(_path(project), output, COLUMNS)


@app.command("show")
def show(project: ProjectArg, schedule: ScheduleArg, output: Output = Format.text) -> None:
    """Show a schedule with its next due times."""
    show_item(_path(project, schedule), output)


@app.command("create")
def create(
    project: ProjectArg,
    schedule: ScheduleArg,
    job: Job = None,
    pipeline: Pipeline = None,
    expression: Expression = None,
    time_zone: TimeZone = None,
    parameter: Parameters = None,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Create a schedule of a job (or a pipeline)."""
    fields = _fields(job, pipeline, expression, time_zone, parameter)
    body = read_body(file, {"identifier": schedule, **fields})
    write_item("POST", _path(project), body, output, f"schedule {schedule} created")


@app.command("update")
def update(
    project: ProjectArg,
    schedule: ScheduleArg,
    job: Job = None,
    pipeline: Pipeline = None,
    expression: Expression = None,
    time_zone: TimeZone = None,
    parameter: Parameters = None,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Change the fields given of a schedule (PATCH)."""
    body = read_body(file, _fields(job, pipeline, expression, time_zone, parameter))
    if job is not None or pipeline is not None:  # moving to the one means leaving the other
        body.setdefault("job", None)
        body.setdefault("pipeline", None)
    write_item("PATCH", _path(project, schedule), body, output, f"schedule {schedule} updated")


@app.command("enable")
def enable(project: ProjectArg, schedule: ScheduleArg, output: Output = Format.text) -> None:
    """Enable a schedule."""
    set_enabled(_path(project, schedule), True, output, f"schedule {schedule}")


@app.command("disable")
def disable(project: ProjectArg, schedule: ScheduleArg, output: Output = Format.text) -> None:
    """Disable a schedule: it triggers nothing."""
    set_enabled(_path(project, schedule), False, output, f"schedule {schedule}")


@app.command("delete")
def delete(project: ProjectArg, schedule: ScheduleArg) -> None:
    """Delete a schedule."""
    delete_item(_path(project, schedule), f"schedule {schedule}")
