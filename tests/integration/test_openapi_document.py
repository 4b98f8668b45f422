"""The OpenAPI document (issue 24, item 7): a description on every operation, parameter and
field, the security schemes on every operation that needs credentials, enums for statuses and
roles, examples; walked whole, so a new route or field without a description fails here."""

from __future__ import annotations

from typing import Any

from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.web.permissions import ROUTE_PERMISSIONS
from tests.helpers import RecordingClient

ADDED = ("Needs the permission", "Anonymous")  # what web/api/openapi.py adds to every operation


async def document(api: RecordingClient) -> dict[str, Any]:
    response = await api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


async def test_openapi_every_operation_and_parameter_has_a_description(
    api: RecordingClient,
) -> None:
    doc = await document(api)
    missing: list[str] = []
    operations = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            operations += 1
            own = operation.get("description", "").split("\n\n")[0].strip()
            if not own or own.startswith(ADDED):
                missing.append(f"{method.upper()} {path}")
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    missing.append(f"{method.upper()} {path} parameter {parameter['name']}")
    assert operations > 60
    assert missing == []


async def test_openapi_every_schema_property_has_a_description(api: RecordingClient) -> None:
    doc = await document(api)
    missing = [
        f"{name}.{field}"
        for name, schema in doc["components"]["schemas"].items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]
    assert len(doc["components"]["schemas"]) > 40
    assert missing == []


async def test_openapi_security_schemes_on_every_operation_but_anonymous_ones(
    api: RecordingClient,
) -> None:
    doc = await document(api)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["basic"] == {**schemes["basic"], "type": "http", "scheme": "basic"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            permission = ROUTE_PERMISSIONS.get((method.upper(), path))
            if permission is None or permission.value == "public":
                assert operation["security"] == [], path
            else:
                assert operation["security"] == [{"bearer": []}, {"basic": []}], path
                assert f"`{permission.value}`" in operation["description"], path
    login = doc["paths"]["/api/v1/me/login"]["post"]
    assert login["security"] == [] and "Anonymous" in login["description"]


async def test_openapi_enums_for_statuses_and_roles_and_examples(api: RecordingClient) -> None:
    schemas = (await document(api))["components"]["schemas"]
    run = schemas["RunOut"]["properties"]
    assert run["status"]["enum"] == [s.value for s in RunStatus]
    assert schemas["RunStepOut"]["properties"]["status"]["enum"] == [s.value for s in StepStatus]
    roles = schemas["UserOut"]["properties"]["roles"]["items"]["enum"]
    assert roles == ["viewer", "auditor", "operator", "worker", "administrator"]
    assert schemas["RunOut"]["examples"][0]["status"] == "succeeded"
    assert schemas["JobIn"]["examples"][0]["steps"][0]["command"][0] == "echo"
