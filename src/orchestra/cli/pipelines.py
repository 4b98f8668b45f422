"""`orchestra pipeline list|show|create|update|enable|disable|delete` (definitions) and
`trigger|runs|show-run|cancel|approve|reject` (pipeline runs, named by a unique prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestra.cli import run_ids
from orchestra.cli.common import (
    FileOption,
    Format,
    Output,
    ProjectArg,
    connect,
    key_values,
    read_body,
    show_one,
)
from orchestra.cli.pipeline_follow import follow_pipeline
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item

app = typer.Typer(
    help="Pipelines of a project, and their runs: trigger, follow, approve.", no_args_is_help=True
)
PipelineArg = Annotated[str, typer.Argument(help="the pipeline's identifier")]
RunArg = Annotated[str, typer.Argument(help="the pipeline run's identifier, or a unique prefix")]
NodeArg = Annotated[str, typer.Argument(help="the approval node's identifier")]
Comment = Annotated[str | None, typer.Option(help="why, for the record")]
PipelineFile = Annotated[
    Path, typer.Option("--file", "-f", help="the pipeline's fields (nodes...), as YAML or JSON")
]
COLUMNS = ("identifier", "display_name", "is_enabled", "update_date")
RUN_COLUMNS = ("identifier", "pipeline", "status", "creation_date", "completion_date")


def _path(project: str, pipeline: str | None = None) -> str:
    return f"/projects/{project}/pipelines" + ("" if pipeline is None else f"/{pipeline}")


@app.command("list")
def list_pipelines(project: ProjectArg, output: Output = Format.text) -> None:
    """List a project's pipelines."""
    list_items(_path(project), output, COLUMNS)


@app.command("show")
def show(project: ProjectArg, pipeline: PipelineArg, output: Output = Format.text) -> None:
    """Show a pipeline (its nodes)."""
    show_item(_path(project, pipeline), output)


@app.command("create")
def create(
    project: ProjectArg, pipeline: PipelineArg, file: PipelineFile, output: Output = Format.text
) -> None:
    """Create a pipeline from a file of its fields."""
    body = read_body(file, {"identifier": pipeline})
    write_item("POST", _path(project), body, output, f"pipeline {pipeline} created")


@app.command("update")
def update(
    project: ProjectArg,
    pipeline: PipelineArg,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Change the fields a file gives of a pipeline (PATCH)."""
    body = read_body(file, {})
    write_item("PATCH", _path(project, pipeline), body, output, f"pipeline {pipeline} updated")


@app.command("enable")
def enable(project: ProjectArg, pipeline: PipelineArg, output: Output = Format.text) -> None:
    """Enable a pipeline."""
    set_enabled(_path(project, pipeline), True, output, f"pipeline {pipeline}")


@app.command("disable")
def disable(project: ProjectArg, pipeline: PipelineArg, output: Output = Format.text) -> None:
    """Disable a pipeline: it cannot be triggered."""
    set_enabled(_path(project, pipeline), False, output, f"pipeline {pipeline}")


@app.command("delete")
def delete(project: ProjectArg, pipeline: PipelineArg) -> None:
    """Delete a pipeline."""
    delete_item(_path(project, pipeline), f"pipeline {pipeline}")


@app.command("trigger")
def trigger(
    project: ProjectArg,
    pipeline: PipelineArg,
    parameter: Annotated[
        list[str] | None, typer.Option("--parameter", "-p", metavar="KEY=VALUE", help="repeat")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="print each node's changes; exit 0 only on success")
    ] = False,
) -> None:
    """Trigger a pipeline run; print its identifier."""
    parameters = key_values(parameter, "--parameter")
    with connect() as client:
        run = client.trigger_pipeline(project, pipeline, parameters)
        if not follow:
            typer.echo(run["identifier"])
            return
        typer.echo(f"pipeline run {run['identifier']} triggered", err=True)
        code = follow_pipeline(client, project, run["identifier"])
    raise typer.Exit(code)


@app.command("runs")
def list_runs(
    project: ProjectArg,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline's runs")] = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    output: Output = Format.text,
) -> None:
    """List a project's pipeline runs, newest first."""
    path = f"/projects/{project}/pipeline-runs"
    list_items(path, output, RUN_COLUMNS, pipeline=pipeline, status=status)


@app.command("show-run")
def show_run(project: ProjectArg, run: RunArg, output: Output = Format.json) -> None:
    """Show a pipeline run with its nodes (JSON unless -o text)."""
    with connect() as client:
        show_one(client.pipeline_run(project, run_ids.pipeline_run(client, project, run)), output)


def _act(
    project: str, run: str, action: str, body: dict[str, object] | None, output: Format
) -> None:
    with connect() as client:
        identifier = run_ids.pipeline_run(client, project, run)
        result = client.post(f"/projects/{project}/pipeline-runs/{identifier}/{action}", body)
    if output is Format.json:
        show_one(result, output)
    else:
        typer.echo(f"pipeline run {result['identifier']} {result['status']}")


@app.command("cancel")
def cancel(project: ProjectArg, run: RunArg, output: Output = Format.text) -> None:
    """Cancel a pipeline run: its runs cancelled or aborted, its other nodes skipped."""
    _act(project, run, "cancel", None, output)


@app.command("approve")
def approve(
    project: ProjectArg,
    run: RunArg,
    node: NodeArg,
    comment: Comment = None,
    output: Output = Format.text,
) -> None:
    """Approve a waiting approval node."""
    _act(project, run, f"nodes/{node}/approve", {"comment": comment}, output)


@app.command("reject")
def reject(
    project: ProjectArg,
    run: RunArg,
    node: NodeArg,
    comment: Comment = None,
    output: Output = Format.text,
) -> None:
    """Reject a waiting approval node: it fails."""
    _act(project, run, f"nodes/{node}/reject", {"comment": comment}, output)
