"""Serves the operator web app: the shell at `/` and its files at `/ui/<build>/<path>`."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from api.auth import PUBLIC
from api.problems import not_found
from api.ui.assets import IMMUTABLE, REVALIDATE, STATIC_PREFIX, Bundle


def _headers(bundle: Bundle, cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": bundle.csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def ui_handlers(bundle: Bundle) -> list[HTTPRouteHandler]:
    """The two public routes of the app built from `bundle` (its data comes from the guarded API)."""

    @get("/", media_type=MediaType.HTML, opt=PUBLIC, include_in_schema=False)
    async def index() -> Response[bytes]:
        """The page shell: names the current build's files; revalidated on every load."""
        return Response(bundle.shell, media_type=MediaType.HTML, headers=_headers(bundle, REVALIDATE))

    @get(f"{STATIC_PREFIX}/{{build:str}}/{{path:path}}", opt=PUBLIC, include_in_schema=False)
    async def static(build: FromPath[str], path: FromPath[str]) -> Response[bytes]:
        """One file of the app, cached for a year: its URL changes whenever any file does."""
        asset = bundle.assets.get(path.lstrip("/"))
        if build != bundle.build or asset is None:
            # Another build's URL (a page loaded before a release): reloading the shell fixes it.
            raise not_found(f"no file {path!r} in build {build!r}; reload the page")
        return Response(asset.body, media_type=asset.media_type, headers=_headers(bundle, IMMUTABLE))

    return [index, static]
