"""The operator web app's files, read once into memory, and the headers they are served with.

Every file under `api/ui/static/` (the app's own modules, the vendored libraries, the map data) is served
at `/ui/<build>/<path>`, where `<build>` is a digest of all of them: a URL never names two contents, so
browsers may keep each file for a year without asking (`immutable`), and a new release is a new URL.
The shell (`/`) names the current build and is revalidated on every load (`no-cache`), as are the web
app manifest (`/manifest.webmanifest`) and the service worker (`/sw.js`, at the root so that its scope
is the whole app), which lists this build's files to keep for offline use.

The Content-Security-Policy lets the page load and run only what this server sends (no inline script or
style, no other origin), talk only to this server (HTTP and WebSocket), and show images from this server,
`data:` URLs and, only when configured, the origin of the operator's tile server (`api.map_tile_url`).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final
from urllib.parse import urlsplit

from config import SettingsError

STATIC_PREFIX: Final = "/ui"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
BUILD_DIGITS: Final = 16
SHELL_NAME: Final = "index.html"
WORKER_NAME: Final = "sw.js"
MANIFEST_NAME: Final = "manifest.webmanifest"
# Placeholders of the shell, the worker and the manifest, replaced when they are loaded.
BUILD_MARK: Final = "__BUILD__"
FILES_MARK: Final = "__FILES__"
TILE_MARK: Final = "__TILE_URL__"
TILE_PLACEHOLDERS: Final = ("{z}", "{x}", "{y}")
MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes and media type."""

    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """Everything the app serves: the files by path (relative to `static/`), the build, the shell, the CSP."""

    build: str
    assets: Mapping[str, Asset]
    shell: bytes
    csp: str
    worker: bytes = b""
    manifest: bytes = b""

    @property
    def base(self) -> str:
        """The URL prefix of this build's files."""
        return f"{STATIC_PREFIX}/{self.build}"


def tile_origin(tile_url: str) -> str | None:
    """The origin of a configured tile URL template (None when unset); `SettingsError` when it is unusable."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise SettingsError(
            f"FLEETBRIDGE_API_MAP_TILE_URL={tile_url!r} must be an http(s) URL, e.g. https://tiles.example/{{z}}/{{x}}/{{y}}.png"
        )
    missing = [mark for mark in TILE_PLACEHOLDERS if mark not in tile_url]
    if missing:
        raise SettingsError(
            f"FLEETBRIDGE_API_MAP_TILE_URL={tile_url!r} lacks {', '.join(missing)}: Leaflet fills them in"
        )
    if any(ch in tile_url for ch in "\"'<> ;"):
        raise SettingsError(f"FLEETBRIDGE_API_MAP_TILE_URL={tile_url!r} holds characters a URL template cannot hold")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(tiles: str | None) -> str:
    """The policy of every page and file of the app; `tiles` is the one other origin images may come from."""
    images = "'self' data:" + (f" {tiles}" if tiles else "")
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            files.update(_walk(entry, f"{name}/"))
        elif entry.is_file():
            files[name] = entry.read_bytes()
    return files


def _media_type(path: str) -> str:
    suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "text/plain; charset=utf-8"  # LICENSE files


def load_bundle(tile_url: str = "") -> Bundle:
    """Read every static file and the shell; raises `SettingsError` for an unusable tile URL."""
    tiles = tile_origin(tile_url)
    package = resources.files("api.ui")
    files = _walk(package.joinpath("static"))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    build = digest.hexdigest()[:BUILD_DIGITS]
    assets = {path: Asset(body, _media_type(path)) for path, body in files.items()}
    shell = (
        package.joinpath(SHELL_NAME)
        .read_text(encoding="utf-8")
        .replace(BUILD_MARK, f"{STATIC_PREFIX}/{build}")
        .replace(TILE_MARK, tile_url)
    )
    base = f"{STATIC_PREFIX}/{build}"
    # The worker's text holds the build and the list of its files: a new release is a new worker.
    worker = (
        package.joinpath(WORKER_NAME)
        .read_text(encoding="utf-8")
        .replace(f'"{BUILD_MARK}"', json.dumps(build))
        .replace(FILES_MARK, json.dumps([f"{base}/{path}" for path in sorted(files)]))
    )
    manifest = package.joinpath(MANIFEST_NAME).read_text(encoding="utf-8").replace(BUILD_MARK, base)
    return Bundle(
        build=build,
        assets=assets,
        shell=shell.encode(),
        csp=content_security_policy(tiles),
        worker=worker.encode(),
        manifest=manifest.encode(),
    )
