"""Validation of project, job and schedule definitions, whether they come from the API or from
an apply document. Each parser takes a plain mapping and returns the row values to store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.domain import controls, cron
from orchestra.domain.artifacts import parse_artifacts
from orchestra.domain.commands import check_command, check_environment, check_workspace
from orchestra.domain.identifiers import check_identifier, check_text
from orchestra.domain.notifications import parse_notification
from orchestra.domain.parameters import parse_parameters
from orchestra.domain.pipelines import pipeline_shape
from orchestra.domain.schedules import check_expression, parse_policies
from orchestra.domain.webhooks import parse_webhook
from orchestra.errors import InvalidInput

PROJECT_FIELDS = frozenset({"identifier", "display_name", "services", "is_enabled", "concurrency"})
JOB_FIELDS = frozenset(
    {
        "identifier",
        "display_name",
        "description",
        "workspace",
        "steps",
        "parameters",
        "properties",
        "is_enabled",
        "lease",
        "timeout",
        "retry",
        "concurrency",
        "priority",
        "expiry",
        "retention",
        "sandbox",
        "limits",
        "environment",
        "artifacts",
        "webhook",
    }
)
SCHEDULE_FIELDS = frozenset(
    {
        "identifier",
        "display_name",
        "job",
        "pipeline",
        "parameters",
        "expression",
        "time_zone",
        "is_enabled",
        "overlap",
        "catchup",
        "catchup_window",
        "catchup_max",
    }
)
MAX_STEPS = 200


def _mapping(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{what} must be a mapping")
    return raw


def _known(raw: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise InvalidInput(f"{what}: unknown fields {', '.join(unknown)}")


def _bool(raw: object, what: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidInput(f"{what} must be true or false")
    return raw


def _json_mapping(raw: object, what: str) -> dict[str, Any]:
    mapping = _mapping(raw if raw is not None else {}, what)
    for key in mapping:
        if not isinstance(key, str) or not key or "\x00" in key:
            raise InvalidInput(f"{what}: keys must be non-empty strings")
    return dict(mapping)


def parse_project(raw: object) -> dict[str, Any]:
    data = _mapping(raw, "project")
    _known(data, PROJECT_FIELDS, "project")
    identifier = check_identifier(data.get("identifier"), "project identifier")
    return {
        "identifier": identifier,
        "display_name": check_text(data.get("display_name") or identifier, "display_name"),
        "services": _json_mapping(data.get("services"), "services"),
        "is_enabled": _bool(data.get("is_enabled", True), "is_enabled"),
        "concurrency": controls.whole(data.get("concurrency"), "concurrency", 1, 100_000),
    }


def parse_properties(raw: object, what: str = "properties") -> dict[str, Any]:
    properties = _json_mapping(raw, what)
    for key, value in properties.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise InvalidInput(f"{what}.{key} must be a value or a non-empty list of values")
    return properties


def parse_job(raw: object) -> dict[str, Any]:
    data = _mapping(raw, "job")
    _known(data, JOB_FIELDS, "job")
    identifier = check_identifier(data.get("identifier"), "job identifier")
    parameters = parse_parameters(data.get("parameters"))
    steps_raw = data.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise InvalidInput("steps must be a non-empty list of {name, command}")
    if len(steps_raw) > MAX_STEPS:
        raise InvalidInput(f"a job has at most {MAX_STEPS} steps")
    declared = [p.key for p in parameters]
    steps = []
    for index, step_raw in enumerate(steps_raw):
        where = f"steps[{index}]"
        step = _mapping(step_raw, where)
        _known(step, frozenset({"name", "command", "timeout"}), where)
        name = check_text(step.get("name") or f"step-{index + 1}", f"{where}.name", max_length=200)
        parsed_step: dict[str, Any] = {
            "name": name,
            "command": check_command(step.get("command"), declared, where),
        }
        timeout = controls.seconds(step.get("timeout"), f"{where}.timeout")
        if timeout is not None:
            parsed_step["timeout"] = timeout
        steps.append(parsed_step)
    retry = controls.parse_retry(data.get("retry"))
    retention = controls.parse_retention(data.get("retention"))
    lease = data.get("lease")
    if lease is not None and (
        isinstance(lease, bool) or not isinstance(lease, int | float) or lease <= 0
    ):
        raise InvalidInput("lease must be a positive number of seconds")
    return {
        "identifier": identifier,
        "display_name": check_text(data.get("display_name") or identifier, "display_name"),
        "description": check_text(data.get("description") or "", "description"),
        "workspace": check_workspace(data.get("workspace") or identifier),
        "steps": steps,
        "parameters": [p.to_dict() for p in parameters],
        "properties": parse_properties(data.get("properties")),
        "is_enabled": _bool(data.get("is_enabled", True), "is_enabled"),
        "lease": None if lease is None else float(lease),
        "timeout": controls.seconds(data.get("timeout"), "timeout"),
        "retry": None if retry is None else retry.to_dict(),
        "concurrency": controls.whole(data.get("concurrency"), "concurrency", 1, 100_000),
        "priority": controls.priority(data.get("priority")),
        "expiry": controls.seconds(data.get("expiry"), "expiry"),
        "retention": None if retention is None else retention.to_dict(),
        "sandbox": controls.parse_sandbox(data.get("sandbox")),
        "limits": controls.parse_limits(data.get("limits")),
        "environment": check_environment(data.get("environment"), declared),
        "artifacts": parse_artifacts(data.get("artifacts")),
        "webhook": parse_webhook(data.get("webhook"), declared, "job"),
    }


def parse_schedule(raw: object) -> dict[str, Any]:
    data = _mapping(raw, "schedule")
    _known(data, SCHEDULE_FIELDS, "schedule")
    identifier = check_identifier(data.get("identifier"), "schedule identifier")
    time_zone = data.get("time_zone") or "UTC"
    if not isinstance(time_zone, str):
        raise InvalidInput("time_zone must be an IANA time zone name")
    cron.time_zone(time_zone)
    parameters = _json_mapping(data.get("parameters"), "parameters")
    return {
        "identifier": identifier,
        "display_name": check_text(data.get("display_name") or identifier, "display_name"),
        **_schedule_target(data),
        "parameters": parameters,
        "expression": check_expression(data.get("expression")),
        "time_zone": time_zone,
        "is_enabled": _bool(data.get("is_enabled", True), "is_enabled"),
        **parse_policies(dict(data)),
    }


def _schedule_target(data: Mapping[str, Any]) -> dict[str, str | None]:
    """What a schedule triggers: exactly one of a job and a pipeline (the other null)."""
    job, pipeline = data.get("job"), data.get("pipeline")
    if (job is None) == (pipeline is None):
        raise InvalidInput("a schedule names exactly one of job and pipeline")
    if job is not None:
        return {"job": check_identifier(job, "job"), "pipeline": None}
    return {"job": None, "pipeline": check_identifier(pipeline, "pipeline")}


def parse_document(raw: object) -> list[dict[str, Any]]:
    """Validate a whole apply document, collecting every error with its path, before anything is
    stored. Returns the projects, each with parsed `jobs` and `schedules` lists and its
    `pipelines` (their shape only: they are checked against the jobs when applied)."""
    errors: list[str] = []
    projects: list[dict[str, Any]] = []
    if not isinstance(raw, Mapping):
        raise InvalidInput("the document must be a mapping with a 'projects' list")
    _known(raw, frozenset({"projects"}), "document")
    items = raw.get("projects") or []
    if not isinstance(items, list):
        raise InvalidInput("projects must be a list")
    seen_projects: set[str] = set()
    for p_index, item in enumerate(items):
        where = f"projects[{p_index}]"
        if not isinstance(item, Mapping):
            errors.append(f"{where}: must be a mapping")
            continue
        children = ("jobs", "schedules", "pipelines", "notifications")
        fields = {k: v for k, v in item.items() if k not in children}
        try:
            project = parse_project(fields)
        except InvalidInput as exc:
            errors.append(f"{where}: {exc}")
            continue
        if project["identifier"] in seen_projects:
            errors.append(f"{where}: project {project['identifier']!r} appears twice")
        seen_projects.add(project["identifier"])
        project["jobs"] = _parse_children(item.get("jobs"), parse_job, f"{where}.jobs", errors)
        project["schedules"] = _parse_children(
            item.get("schedules"), parse_schedule, f"{where}.schedules", errors
        )
        project["pipelines"] = _parse_children(
            item.get("pipelines"), pipeline_shape, f"{where}.pipelines", errors
        )
        project["notifications"] = _parse_children(
            item.get("notifications"), parse_notification, f"{where}.notifications", errors
        )
        job_ids = {j["identifier"] for j in project["jobs"]}
        pipeline_ids = {p["identifier"] for p in project["pipelines"]}
        for s_index, sched in enumerate(project["schedules"]):
            if sched["job"] is not None and sched["job"] not in job_ids:
                errors.append(
                    f"{where}.schedules[{s_index}]: job {sched['job']!r} is not defined "
                    "in this project's jobs"
                )
            if sched["pipeline"] is not None and sched["pipeline"] not in pipeline_ids:
                errors.append(
                    f"{where}.schedules[{s_index}]: pipeline {sched['pipeline']!r} is not "
                    "defined in this project's pipelines"
                )
        projects.append(project)
    if errors:
        raise InvalidInput("; ".join(errors))
    return projects


def _parse_children(raw: object, parse: Any, where: str, errors: list[str]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{where}: must be a list")
        return []
    parsed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        try:
            value = parse(item)
        except InvalidInput as exc:
            errors.append(f"{where}[{index}]: {exc}")
            continue
        if value["identifier"] in seen:
            errors.append(f"{where}[{index}]: {value['identifier']!r} appears twice")
        seen.add(value["identifier"])
        parsed.append(value)
    return parsed
