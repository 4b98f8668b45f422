"""Request and response bodies of the pipelines' definitions (docs/pipelines.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from orchestra.web.api.schemas import Body, Out, ParameterDef, ParameterOut, Scalar
from orchestra.web.api.webhook_schemas import WebhookDef, WebhookOut


class ApprovalDef(Body):
    description: str | None = None


class NodeDef(Body):
    identifier: str
    job: str | None = Field(default=None, description="a job of the same project")
    approval: ApprovalDef | None = Field(
        default=None, description="an approval instead of a job: {description}"
    )
    needs: list[str] | None = None
    when: str | None = Field(default=None, description="success (the default), failure, always")
    parameters: dict[str, Scalar] | None = Field(
        default=None,
        description="the job's parameters, {KEY: template}: {parameters[KEY]} and "
        "{results[NODE][KEY]} (NODE among the node's needs, directly or not)",
    )


class ApprovalOut(Out):
    description: str


class NodeOut(Out):
    identifier: str
    job: str | None = None
    approval: ApprovalOut | None = None
    needs: list[str]
    when: str
    parameters: dict[str, str]


class PipelineOut(Out):
    project: str
    identifier: str
    display_name: str
    description: str
    parameters: list[ParameterOut]
    nodes: list[NodeOut]
    is_enabled: bool
    webhook: WebhookOut | None = None
    creation_date: datetime
    update_date: datetime


class PipelineIn(Body):
    identifier: str
    display_name: str | None = None
    description: str | None = None
    parameters: list[ParameterDef] | None = None
    nodes: list[NodeDef]
    is_enabled: bool | None = None
    webhook: WebhookDef | None = None


class PipelinePut(PipelineIn):
    identifier: str | None = None  # type: ignore[assignment]  # taken from the path


class PipelinePatch(Body):
    identifier: str | None = None
    display_name: str | None = None
    description: str | None = None
    parameters: list[ParameterDef] | None = None
    nodes: list[NodeDef] | None = None
    is_enabled: bool | None = None
    webhook: WebhookDef | None = None
