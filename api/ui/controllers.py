"""Serves the operator page at `/`."""

from __future__ import annotations

import functools
from importlib import resources

from litestar import MediaType, get

from api.auth import PUBLIC


@functools.cache
def _page() -> bytes:
    return resources.files("api.ui").joinpath("index.html").read_bytes()


@get("/", media_type=MediaType.HTML, opt=PUBLIC, include_in_schema=False)
async def index() -> bytes:
    """The operator page; its data comes from the (guarded) API and WebSocket."""
    return _page()
