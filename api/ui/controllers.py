"""Serves the operator web app: the shell at `/`, its files at `/ui/<build>/<path>`, and, for offline use,
its manifest at `/manifest.webmanifest` and its service worker at `/sw.js`."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from api.auth import PUBLIC
from api.problems import not_found
from api.ui.assets import IMMUTABLE, MEDIA_TYPES, REVALIDATE, STATIC_PREFIX, Bundle

MANIFEST_MEDIA_TYPE = "application/manifest+json"


def _headers(bundle: Bundle, cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": bundle.csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def ui_handlers(bundle: Bundle) -> list[HTTPRouteHandler]:
    """The public routes of the app built from `bundle` (its data comes from the guarded API)."""

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

    @get("/sw.js", opt=PUBLIC, include_in_schema=False)
    async def worker() -> Response[bytes]:
        """The service worker: at the root, so that it may serve the shell; revalidated, so a release
        installs its successor."""
        return Response(bundle.worker, media_type=MEDIA_TYPES[".js"], headers=_headers(bundle, REVALIDATE))

    @get("/manifest.webmanifest", opt=PUBLIC, include_in_schema=False)
    async def manifest() -> Response[bytes]:
        """The web app manifest: a field tablet may install the app."""
        return Response(bundle.manifest, media_type=MANIFEST_MEDIA_TYPE, headers=_headers(bundle, REVALIDATE))

    return [index, static, worker, manifest]
