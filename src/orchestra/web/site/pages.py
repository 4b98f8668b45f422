"""The website (pages come with the website issue)."""

from __future__ import annotations

from fastapi import APIRouter


def site_router() -> APIRouter:
    return APIRouter()
