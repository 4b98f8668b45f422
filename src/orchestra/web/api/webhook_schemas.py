"""The `webhook` of a job or a pipeline in the API's bodies (docs/events.md, "Webhooks in"):
its secret is write-only, always shown as "***"."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MASK = "***"


class WebhookDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(
        default=None,
        description='write-only; "***" or left out keeps the stored one',
    )
    signature: Literal["github", "gitlab", "standard"]
    parameters: dict[str, str] | None = Field(
        default=None, description="{KEY: PATH}: a parameter from a dotted path into the body"
    )
    filter: dict[str, str] | None = Field(
        default=None, description="{PATH: REGEX}: a run only when re.search matches each"
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    secret: str = Field(default=MASK, description='always "***"')
    signature: str
    parameters: dict[str, str] = Field(default_factory=dict)
    filter: dict[str, str] = Field(default_factory=dict)

    @field_validator("secret", mode="before")
    @classmethod
    def _masked(cls, _value: Any) -> str:
        return MASK
