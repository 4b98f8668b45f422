"""Project secrets and secret parameters at rest (services/secrets.py, services/keyring.py,
services/parameter_secrets.py), in process on both engines: values never shown by any route or
page, stored only as ciphertext, "***" keeping a stored value."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.services.keyring import Keyring
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project_secret
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth, leaks

API = "/api/v1"
PROJECT_SECRET = "pr0ject-s3cret-value"
DEFAULT = "d3fault-s3cret-value"
GIVEN = "g1ven-s3cret-value"
SCHEDULED = "sch3duled-s3cret-value"
IN_ERROR = "err0r-s3cret-value"
# A value given at trigger that looks like ciphertext: encrypted as given all the same.
LOOKALIKE = "enc:v1:000000000000:bG9va2FsaWtl"
VALUES = [PROJECT_SECRET, DEFAULT, GIVEN, SCHEDULED, IN_ERROR, LOOKALIKE]
PASSWORD = "an admin password 1"

JOB = {
    "steps": [{"name": "a", "command": ["echo", "{parameters[token]}", "{parameters[color]}"]}],
    "parameters": [
        {"key": "token", "secret": True, "default": DEFAULT},
        {"key": "color", "default": "red"},
    ],
}


async def database_text(services: Services) -> str:
    """Everything the database holds, as text: SQLite's file and its WAL, or every text and
    JSON column of every table of PostgreSQL."""
    url = sa.engine.make_url(services.db.url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        files = [path, path.with_name(path.name + "-wal")]
        return "".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    parts: list[str] = []
    async with services.db.read() as conn:
        columns = await conn.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type IN "
                "('text', 'character varying', 'json', 'jsonb')"
            )
        )
        for table, column in list(columns):
            query = sa.text(f'SELECT CAST("{column}" AS text) FROM "{table}"')
            parts += [str(v) for v in (await conn.execute(query)).scalars() if v is not None]
    return "\n".join(parts)


async def admin_token(make_user: MakeUser) -> dict[str, str]:
    return auth(await make_user("admin", ["administrator"]))


async def project_with_secret_job(api: RecordingClient, headers: dict[str, str]) -> None:
    assert (await api.put(f"{API}/projects/p", json={}, headers=headers)).status_code == 201
    put = await api.put(f"{API}/projects/p/jobs/j", json=JOB, headers=headers)
    assert put.status_code == 201, put.text


async def stored_job_default(services: Services) -> str:
    async with services.db.read() as conn:
        parameters = await conn.scalar(
            sa.select(job_table.c.parameters).where(job_table.c.identifier == "j")
        )
    return str(next(p for p in parameters if p["key"] == "token")["default"])


async def run_values(services: Services, run: str) -> dict[str, str]:
    async with services.db.read() as conn:
        values = await conn.scalar(
            sa.select(run_table.c.parameters).where(run_table.c.identifier == run)
        )
    return dict(values)


# Project secrets.


async def test_secrets_are_set_listed_and_deleted_never_shown(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await admin_token(make_user)
    assert (await api.put(f"{API}/projects/p", json={}, headers=admin)).status_code == 201
    url = f"{API}/projects/p/secrets"

    created = await api.put(f"{url}/DB_PASSWORD", json={"value": PROJECT_SECRET}, headers=admin)
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"project", "name", "creation_date", "update_date"}
    replaced = await api.put(f"{url}/DB_PASSWORD", json={"value": "another"}, headers=admin)
    assert replaced.status_code == 200
    assert replaced.json()["creation_date"] == created.json()["creation_date"]
    await api.put(f"{url}/_second", json={"value": PROJECT_SECRET}, headers=admin)

    listed = await api.get(url, params={"limit": 1}, headers=admin)
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["items"]] == ["DB_PASSWORD"]
    rest = await api.get(url, params={"cursor": listed.json()["next_cursor"]}, headers=admin)
    assert [s["name"] for s in rest.json()["items"]] == ["_second"]
    assert await services.secrets.values("p", ["DB_PASSWORD", "_second", "absent"]) == {
        "DB_PASSWORD": "another",
        "_second": PROJECT_SECRET,
    }

    assert (await api.delete(f"{url}/_second", headers=admin)).status_code == 204
    missing = await api.delete(f"{url}/_second", headers=admin)
    assert missing.status_code == 404 and "_second" in missing.json()["detail"]
    assert (await api.get(f"{API}/projects/nope/secrets", headers=admin)).status_code == 404
    nowhere = await api.put(f"{API}/projects/nope/secrets/X", json={"value": "v"}, headers=admin)
    assert nowhere.status_code == 404

    assert await services.secrets.values("p", ["_second"]) == {}
    assert not leaks(api.exchanges, VALUES)
    assert PROJECT_SECRET not in await database_text(services)


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("1starts_with_digit", {"value": IN_ERROR}, "name"),
        ("has-dash", {"value": IN_ERROR}, "name"),
        ("x" * 101, {"value": IN_ERROR}, "name"),
        ("EMPTY", {"value": ""}, "non-empty"),
        ("LONG", {"value": "x" * (64 * 1024 + 1)}, "at most"),
        ("NOT_TEXT", {"value": 12}, "value"),
        ("EXTRA", {"value": IN_ERROR, "other": IN_ERROR}, "other"),
    ],
)
async def test_bad_secrets_get_a_clear_422_that_shows_no_value(
    api: RecordingClient,
    make_user: MakeUser,
    services: Services,
    name: str,
    body: dict[str, object],
    expected: str,
) -> None:
    admin = await admin_token(make_user)
    await api.put(f"{API}/projects/p", json={}, headers=admin)
    response = await api.put(f"{API}/projects/p/secrets/{name}", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert IN_ERROR not in response.text
    assert IN_ERROR not in await database_text(services)


async def test_viewers_list_secret_names_operators_set_them(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await admin_token(make_user)
    viewer = auth(await make_user("viewer", ["viewer"]))
    operator = auth(await make_user("operator", ["operator"]))
    await api.put(f"{API}/projects/p", json={}, headers=admin)
    url = f"{API}/projects/p/secrets"
    assert (await api.put(f"{url}/A", json={"value": "v"}, headers=viewer)).status_code == 403
    assert (await api.put(f"{url}/A", json={"value": "v"}, headers=operator)).status_code == 201
    assert (await api.get(url, headers=viewer)).json()["items"][0]["name"] == "A"
    assert (await api.delete(f"{url}/A", headers=viewer)).status_code == 403
    assert (await api.delete(f"{url}/A", headers=operator)).status_code == 204
    assert (await api.get(url)).status_code == 401


async def test_a_ciphertext_moved_elsewhere_does_not_decrypt(services: Services) -> None:
    await services.projects.create_project({"identifier": "p"})
    await services.secrets.put_secret("p", "A", PROJECT_SECRET)
    async with services.db.transaction() as conn:
        value = await conn.scalar(sa.select(project_secret.c.value))
        assert Keyring.is_encrypted(value)
        await conn.execute(
            project_secret.insert().values(
                project="p",
                name="B",
                value=value,
                creation_date=sa.func.now(),
                update_date=sa.func.now(),
            )
        )
    with pytest.raises(Exception, match="belongs elsewhere"):
        await services.secrets.values("p", ["B"])
    assert await services.secrets.values("p", ["A"]) == {"A": PROJECT_SECRET}


# Secret parameters.


async def test_secret_parameter_values_are_masked_everywhere_and_stored_encrypted(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await admin_token(make_user)
    await project_with_secret_job(api, admin)
    base = f"{API}/projects/p"

    job = (await api.get(f"{base}/jobs/j", headers=admin)).json()
    assert job["parameters"][0] == {
        "key": "token",
        "description": "",
        "default": "***",
        "choices": None,
        "secret": True,
    }
    listed = (await api.get(f"{base}/jobs", headers=admin)).json()["items"]
    assert listed[0]["parameters"][0]["default"] == "***"
    assert job["parameters"][1]["default"] == "red"

    given = await api.post(
        f"{base}/jobs/j/trigger", json={"parameters": {"token": GIVEN}}, headers=admin
    )
    assert given.status_code == 201 and given.json()["parameters"]["token"] == "***"
    defaulted = await api.post(f"{base}/jobs/j/trigger", headers=admin)
    lookalike = await api.post(
        f"{base}/jobs/j/trigger", json={"parameters": {"token": LOOKALIKE}}, headers=admin
    )
    stored = {
        name: (await run_values(services, response.json()["identifier"]))["token"]
        for name, response in (("given", given), ("default", defaulted), ("look", lookalike))
    }
    assert all(Keyring.is_encrypted(v) for v in stored.values())
    opened = {k: services.keyring.decrypt(v, "parameter") for k, v in stored.items()}
    assert opened == {"given": GIVEN, "default": DEFAULT, "look": LOOKALIKE}

    schedule = {"job": "j", "expression": "* * * * *", "parameters": {"token": SCHEDULED}}
    created = await api.post(
        f"{base}/schedules", json={"identifier": "s", **schedule}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["parameters"] == {"token": "***"}
    shown = (await api.get(f"{base}/schedules/s", headers=admin)).json()
    assert shown["parameters"] == {"token": "***"}
    assert (await api.get(f"{base}/schedules", headers=admin)).json()["items"][0]["parameters"] == {
        "token": "***"
    }
    assert await services.scheduler.tick(services.clock.now() + timedelta(minutes=2)) == 1
    runs = (await api.get(f"{base}/runs", params={"job": "j"}, headers=admin)).json()["items"]
    fired = next(r for r in runs if r["source"].get("type") == "schedule")
    assert fired["parameters"]["token"] == "***"
    fired_value = (await run_values(services, fired["identifier"]))["token"]
    assert services.keyring.decrypt(fired_value, "parameter") == SCHEDULED
    for run in runs:
        assert (await api.get(f"{base}/runs/{run['identifier']}", headers=admin)).is_success
        await api.get(f"{base}/runs/{run['identifier']}/log", headers=admin)

    bad = await api.post(
        f"{base}/jobs/j/trigger", json={"parameters": {"nope": IN_ERROR}}, headers=admin
    )
    assert bad.status_code == 422
    assert not leaks(api.exchanges, VALUES)
    text = await database_text(services)
    assert not [v for v in VALUES if v in text]


async def test_stars_or_a_patch_without_parameters_keep_the_stored_value(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await admin_token(make_user)
    await project_with_secret_job(api, admin)
    url = f"{API}/projects/p/jobs/j"
    first = await stored_job_default(services)

    masked = (await api.get(url, headers=admin)).json()
    again = {k: masked[k] for k in ("steps", "parameters")}
    assert (await api.put(url, json=again, headers=admin)).status_code == 200
    assert await stored_job_default(services) == first
    patched = await api.patch(url, json={"description": "no parameters"}, headers=admin)
    assert patched.status_code == 200 and patched.json()["parameters"][0]["default"] == "***"
    assert await stored_job_default(services) == first
    same = {**JOB, "description": "the same value again"}
    assert (await api.put(url, json=same, headers=admin)).status_code == 200
    assert await stored_job_default(services) == first  # same plaintext: same ciphertext

    token, color = JOB["parameters"]
    changed = {**JOB, "parameters": [{**token, "default": "new"}, color]}
    assert (await api.put(url, json=changed, headers=admin)).status_code == 200
    assert services.keyring.decrypt(await stored_job_default(services), "parameter") == "new"

    plain = {"steps": [{"name": "a", "command": ["true"]}]}
    fresh = {**plain, "parameters": [{"key": "token", "secret": True, "default": "***"}]}
    refused = await api.put(f"{API}/projects/p/jobs/k", json=fresh, headers=admin)
    assert refused.status_code == 422 and "none is stored" in refused.json()["detail"]
    choices = {
        **plain,
        "parameters": [{"key": "token", "secret": True, "default": "a", "choices": ["a"]}],
    }
    refused = await api.put(f"{API}/projects/p/jobs/k", json=choices, headers=admin)
    assert refused.status_code == 422 and "no choices" in refused.json()["detail"]

    base = f"{API}/projects/p/schedules/s"
    body = {"job": "j", "expression": "@daily", "parameters": {"token": SCHEDULED}}
    assert (await api.put(base, json=body, headers=admin)).status_code == 201
    async with services.db.read() as conn:
        kept = await conn.scalar(sa.select(schedule_table.c.parameters))
    starred = {**body, "parameters": {"token": "***"}}
    assert (await api.put(base, json=starred, headers=admin)).status_code == 200
    assert (await api.patch(base, json={"expression": "@hourly"}, headers=admin)).is_success
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(schedule_table.c.parameters)) == kept
    assert services.keyring.decrypt(kept["token"], "parameter") == SCHEDULED
    assert not leaks(api.exchanges, VALUES)


async def test_applying_a_document_twice_changes_nothing_and_shows_no_secret(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await admin_token(make_user)
    document = {
        "projects": [
            {
                "identifier": "p",
                "jobs": [{"identifier": "j", **JOB}],
                "schedules": [
                    {
                        "identifier": "s",
                        "job": "j",
                        "expression": "@daily",
                        "parameters": {"token": SCHEDULED},
                    }
                ],
            }
        ]
    }
    first = await api.post(f"{API}/apply", json=document, headers=admin)
    assert first.status_code == 200, first.text
    second = await api.post(f"{API}/apply", json=document, headers=admin)
    assert {c["action"] for c in second.json()["changes"]} == {"unchanged"}
    job = (await api.get(f"{API}/projects/p/jobs/j", headers=admin)).json()
    assert job["parameters"][0]["default"] == "***"
    assert services.keyring.decrypt(await stored_job_default(services), "parameter") == DEFAULT
    assert not leaks(api.exchanges, VALUES)
    text = await database_text(services)
    assert DEFAULT not in text and SCHEDULED not in text


# The website.


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def test_the_website_shows_names_and_sets_values_it_never_shows(
    site: httpx.AsyncClient, api: RecordingClient, services: Services
) -> None:
    await services.users.create_user("admin", roles=["administrator"], password=PASSWORD)
    _token, secret = await services.users.create_token("admin", "test", None)
    await project_with_secret_job(api, auth(secret))
    login = await site.get("/login")
    done = await site.post(
        "/login", data={"user": "admin", "password": PASSWORD, "csrf_token": form_token(login)}
    )
    assert done.status_code == 303

    page = await site.get("/projects/p")
    assert "No secrets." in page.text
    form = {"name": "API_KEY", "value": PROJECT_SECRET, "csrf_token": form_token(page)}
    assert (await site.post("/projects/p/secrets", data={**form, "csrf_token": "x"})).status_code
    assert await services.secrets.values("p", ["API_KEY"]) == {}  # no CSRF token, no change
    set_it = await site.post("/projects/p/secrets", data=form)
    assert set_it.status_code == 303 and "created" in set_it.headers["location"]
    page = await site.get("/projects/p")
    assert "API_KEY" in page.text and PROJECT_SECRET not in page.text
    bad = await site.post(
        "/projects/p/secrets", data={**form, "name": "bad-name", "value": IN_ERROR}
    )
    assert "error=" in bad.headers["location"] and IN_ERROR not in bad.headers["location"]

    job_page = await site.get("/projects/p/jobs/j")
    assert "set (leave empty to use it)" in job_page.text and DEFAULT not in job_page.text
    token = form_token(job_page)
    await site.post(
        "/projects/p/jobs/j/trigger",
        data={"csrf_token": token, "secret.token": "", "parameter.color": "blue"},
    )
    await site.post(
        "/projects/p/jobs/j/trigger",
        data={"csrf_token": token, "secret.token": GIVEN, "parameter.color": "red"},
    )
    runs, _ = await services.runs.list_runs("p", job="j")
    opened = {
        r.parameters["color"]: services.keyring.decrypt(r.parameters["token"], "parameter")
        for r in runs
    }
    assert opened == {"blue": DEFAULT, "red": GIVEN}
    await services.projects.put_schedule(
        "p", "s", {"job": "j", "expression": "@daily", "parameters": {"token": SCHEDULED}}
    )
    pages = [
        "/",
        "/projects/p",
        "/projects/p/jobs/j",
        "/projects/p/schedules/s",
        "/projects/p/runs",
        *(f"/projects/p/runs/{r.identifier}" for r in runs),
    ]
    for path in pages:
        shown = await site.get(path)
        assert shown.status_code == 200, path
        assert not [v for v in VALUES if v in shown.text], path

    deleted = await site.post(
        "/projects/p/secrets/API_KEY/delete", data={"csrf_token": form_token(page)}
    )
    assert deleted.status_code == 303 and "deleted" in deleted.headers["location"]
    assert await services.secrets.values("p", ["API_KEY"]) == {}


async def test_a_rotation_encrypts_what_was_stored_in_clear_and_moves_the_rest(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    """Values written before secrets were encrypted (in clear) are encrypted by a rotation,
    which moves every ciphertext to the new key; running it again changes nothing."""
    from orchestra.services.key_rotation import compact_sqlite, reencrypt_all
    from orchestra.services.keyring import new_key

    admin = await admin_token(make_user)
    await project_with_secret_job(api, admin)
    await api.put(f"{API}/projects/p/secrets/A", json={"value": PROJECT_SECRET}, headers=admin)
    run = (await api.post(f"{API}/projects/p/jobs/j/trigger", headers=admin)).json()
    body = {"job": "j", "expression": "@daily", "parameters": {"token": SCHEDULED}}
    await api.put(f"{API}/projects/p/schedules/s", json=body, headers=admin)
    legacy = [{"key": "token", "secret": True, "default": DEFAULT}, JOB["parameters"][1]]
    async with services.db.transaction() as conn:  # as an older version stored them
        await conn.execute(job_table.update().values(parameters=legacy))
        await conn.execute(run_table.update().values(parameters={"token": GIVEN, "color": "red"}))
        await conn.execute(schedule_table.update().values(parameters={"token": SCHEDULED}))

    rotated = Keyring([new_key(), *services.keyring.keys])
    report = await reencrypt_all(services.db, rotated)
    assert report.complete
    changed = {table: count for table, count in report.reencrypted.items() if count}
    assert changed == {"project_secret": 1, "job": 1, "schedule": 1, "run": 1}
    current = Keyring(rotated.keys[:1])
    assert current.decrypt(await stored_job_default(services), "parameter") == DEFAULT
    values = await run_values(services, run["identifier"])
    assert values["color"] == "red"
    assert current.decrypt(values["token"], "parameter") == GIVEN
    async with services.db.read() as conn:
        kept = await conn.scalar(sa.select(schedule_table.c.parameters))
        secret = await conn.scalar(sa.select(project_secret.c.value))
    assert current.decrypt(kept["token"], "parameter") == SCHEDULED
    assert current.decrypt(secret, "secret:p:A") == PROJECT_SECRET
    again = await reencrypt_all(services.db, rotated)
    assert not any(again.reencrypted.values()), again.reencrypted
    compact_sqlite(services.db.url)  # SQLite's free pages and WAL kept the values in clear
    assert not [v for v in VALUES if v in await database_text(services)]


async def test_lone_surrogates_in_secret_values_are_refused_with_a_422(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    """JSON may carry "\\ud800", which no UTF-8 text holds: every way a secret value comes in
    answers 422 and stores nothing, where it used to answer 500."""
    headers = await admin_token(make_user)
    await project_with_secret_job(api, headers)
    json_headers = {**headers, "content-type": "application/json"}
    attempts = [
        ("PUT", f"{API}/projects/p/secrets/S", b'{"value": "\\ud800"}'),
        ("POST", f"{API}/projects/p/jobs/j/trigger", b'{"parameters": {"token": "\\ud800"}}'),
        (
            "PATCH",
            f"{API}/projects/p/jobs/j",
            b'{"parameters": [{"key": "token", "secret": true, "default": "\\udfff"}]}',
        ),
        (
            "POST",
            f"{API}/projects/p/schedules",
            b'{"identifier": "s", "job": "j", "expression": "0 3 * * *",'
            b' "parameters": {"token": "\\ud800"}}',
        ),
    ]
    for method, path, body in attempts:
        answer = await api.request(method, path, content=body, headers=json_headers)
        assert answer.status_code == 422, (method, path, answer.status_code, answer.text)
        assert "Unicode" in answer.json()["detail"], answer.text
    listed = await api.get(f"{API}/projects/p/secrets", headers=headers)
    assert listed.json()["items"] == []
    runs = await api.get(f"{API}/projects/p/runs", headers=headers)
    assert runs.json()["items"] == []
    assert await stored_job_default(services) != "\ud800"


async def test_a_ciphertext_copied_into_another_projects_schedule_stays_text(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    """Someone with a copy of the database and an operator's rights in another project puts a
    secret default's ciphertext as a schedule's value of a parameter that is not secret: the
    run gets the text as it is, never the secret; and a key rotation is not stopped by it."""
    from orchestra.services.key_rotation import reencrypt_all
    from orchestra.services.keyring import new_key

    headers = await admin_token(make_user)
    await project_with_secret_job(api, headers)
    stolen = await stored_job_default(services)
    assert Keyring.is_encrypted(stolen)
    assert (await api.put(f"{API}/projects/q", json={}, headers=headers)).status_code == 201
    plain_job = {"steps": [{"name": "a", "command": ["true"]}], "parameters": [{"key": "x"}]}
    put = await api.put(f"{API}/projects/q/jobs/echo", json=plain_job, headers=headers)
    assert put.status_code == 201, put.text
    schedule = {"job": "echo", "expression": "* * * * *", "parameters": {"x": stolen}}
    put = await api.put(f"{API}/projects/q/schedules/s", json=schedule, headers=headers)
    assert put.status_code == 201, put.text
    assert await services.scheduler.tick(services.clock.now() + timedelta(minutes=2)) >= 1
    runs = (await api.get(f"{API}/projects/q/runs", headers=headers)).json()["items"]
    assert [run["parameters"]["x"] for run in runs] == [stolen]
    assert DEFAULT not in str(await run_values(services, runs[0]["identifier"]))
    report = await reencrypt_all(services.db, Keyring([new_key(), *services.keyring.keys]))
    assert report.complete, report
