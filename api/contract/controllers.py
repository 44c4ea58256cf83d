"""`GET /asyncapi.json`: the MQTT topics and payloads, for integrators (public, like the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from litestar import get

from api.auth import NO_CREDENTIALS, PUBLIC
from models.asyncapi import document


@get("/asyncapi.json", tags=["contract"], opt=PUBLIC, security=NO_CREDENTIALS, summary="AsyncAPI document")
async def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every MQTT topic, from the same types the bridge decodes with."""
    return document()
