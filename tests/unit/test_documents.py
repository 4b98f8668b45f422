"""orchestra.domain.documents: projects, jobs, schedules and whole apply documents; and the
instance's retention setting, which a job's `retention` mirrors."""

from __future__ import annotations

import pytest

from orchestra.domain.documents import parse_document, parse_job, parse_schedule
from orchestra.errors import InvalidInput
from orchestra.settings import load_settings


def test_job_defaults_workspace_and_display_name_to_the_identifier() -> None:
    job = parse_job({"identifier": "build", "steps": [{"command": ["make"]}]})
    assert job["workspace"] == "build"
    assert job["display_name"] == "build"
    assert job["steps"] == [{"name": "step-1", "command": ["make"]}]
    assert job["is_enabled"] is True


@pytest.mark.parametrize(
    "raw",
    [
        {"identifier": "j"},
        {"identifier": "j", "steps": []},
        {"identifier": "j", "steps": [{"command": ["x"], "shell": True}]},
        {"identifier": "j", "steps": [{"command": ["x"]}], "lease": 0},
        {"identifier": "j", "steps": [{"command": ["x"]}], "lease": True},
        {"identifier": "j", "steps": [{"command": ["x"]}], "properties": {"os": []}},
        {"identifier": "j", "steps": [{"command": ["x"]}], "colour": "red"},
    ],
)
def test_job_refuses_bad_definitions(raw: dict) -> None:
    with pytest.raises(InvalidInput):
        parse_job(raw)


def test_schedule_refuses_bad_expressions_and_time_zones() -> None:
    good = {"identifier": "s", "job": "j", "expression": "@hourly"}
    assert parse_schedule(good)["time_zone"] == "UTC"
    for change in (
        {"expression": "* * *"},
        {"expression": "61 * * * *"},
        {"expression": ""},
        {"time_zone": "Mars/Olympus"},
    ):
        with pytest.raises(InvalidInput):
            parse_schedule({**good, **change})


def test_document_collects_every_error_with_its_path() -> None:
    document = {
        "projects": [
            {
                "identifier": "p",
                "jobs": [
                    {"identifier": "a/b", "steps": [{"command": ["x"]}]},
                    {"identifier": "ok", "steps": [{"command": ["{0}"]}]},
                ],
                "schedules": [{"identifier": "s", "job": "ghost", "expression": "@daily"}],
            },
            {"identifier": "p"},
        ]
    }
    with pytest.raises(InvalidInput) as caught:
        parse_document(document)
    message = str(caught.value)
    for path in ("projects[0].jobs[0]", "projects[0].jobs[1]", "projects[0].schedules[0]"):
        assert path in message
    assert "appears twice" in message


def test_document_refuses_what_is_not_a_mapping_of_projects() -> None:
    for raw in (None, [], {"projects": {"p": 1}}, {"projects": [], "extra": 1}):
        with pytest.raises(InvalidInput):
            parse_document(raw)
    assert parse_document({"projects": []}) == []


STEPS = [{"name": "s", "command": ["true"]}]


@pytest.mark.parametrize(
    ("retention", "stored"),
    [
        (None, None),
        ({"days": 30}, {"days": 30.0, "runs": None}),
        ({"runs": 5}, {"days": None, "runs": 5}),
        ({"days": 0.5, "runs": 1}, {"days": 0.5, "runs": 1}),
    ],
)
def test_job_retention_is_stored_as_days_and_runs(retention: object, stored: object) -> None:
    job = parse_job({"identifier": "j", "steps": STEPS, "retention": retention})
    assert job["retention"] == stored


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({}, "retention needs days, runs or both"),
        ({"days": "30"}, "retention.days must be a number of days"),
        ({"days": True}, "retention.days must be a number of days"),
        ({"days": 36_601}, "retention.days must be positive and at most 36600"),
        ({"runs": 2.5}, "retention.runs must be a whole number from 1 to 1000000"),
        ({"runs": 1_000_001}, "retention.runs must be a whole number from 1 to 1000000"),
        ({"days": 1, "keep": 3}, "retention: unknown fields keep"),
        ([30], "retention must be a mapping"),
    ],
)
def test_job_retention_refuses_what_a_yaml_file_may_hold(retention: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_job({"identifier": "j", "steps": STEPS, "retention": retention})


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "1e6", "36601", "a month"])
def test_instance_retention_days_refuses_what_no_sweep_could_use(raw: str) -> None:
    with pytest.raises(InvalidInput, match="ORCHESTRA_RUN_RETENTION_DAYS must be"):
        load_settings(environ={"ORCHESTRA_RUN_RETENTION_DAYS": raw})


def test_instance_retention_days_is_off_unless_set() -> None:
    assert load_settings(environ={}).run_retention_days is None
    assert load_settings(environ={"ORCHESTRA_RUN_RETENTION_DAYS": "90"}).run_retention_days == 90
    assert load_settings(environ={"ORCHESTRA_RUN_RETENTION_DAYS": "36600"}).run_retention_days


@pytest.mark.parametrize("raw", ["nan", "inf", "0", "-5", "soon"])
def test_a_seconds_setting_refuses_what_is_not_a_positive_finite_number(raw: str) -> None:
    with pytest.raises(InvalidInput, match="ORCHESTRA_LEASE must be a"):
        load_settings(environ={"ORCHESTRA_LEASE": raw})
    assert load_settings(environ={"ORCHESTRA_LEASE": "30"}).lease == 30
