"""Master parts wired into the application (filled in by the master)."""

from __future__ import annotations

from fastapi import APIRouter

from orchestra.services.container import Services
from orchestra.web.app import Hook


def master_parts(services: Services) -> tuple[list[Hook], list[Hook], list[APIRouter]]:
    return [], [], []
