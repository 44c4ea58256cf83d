"""Vendors the operator web app's third-party code from the npm registry: `python -m api.ui.vendor`.

Each package is fetched at an exact version: its packument names the tarball and its `dist.integrity`
(an SRI sha512), the tarball is checked against that digest before anything is read from it, and only the
files the app loads (plus the licence) are written to `api/ui/static/vendor/<package>/`. The manifest
(`MANIFEST.json`) records package, version, licence, tarball, integrity and the sha256 of every file
written, so a unit test can prove, with no network, that the committed files are exactly what the
registry published (a hand edit fails it). Changing a version here and running the module again is the
whole upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

REGISTRY: Final = "https://registry.npmjs.org"
VENDOR_DIR: Final = Path(__file__).parent / "static" / "vendor"
MANIFEST_NAME: Final = "MANIFEST.json"
FETCH_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Package:
    """One npm package at an exact version, and which of its files to keep (tarball path -> vendored path)."""

    name: str
    version: str
    files: Mapping[str, str]


PACKAGES: Final = (
    Package(
        "leaflet",
        "1.9.4",
        {
            "package/dist/leaflet.js": "leaflet.js",
            "package/dist/leaflet.css": "leaflet.css",
            # leaflet.css refers to these relative to itself.
            "package/dist/images/layers.png": "images/layers.png",
            "package/dist/images/layers-2x.png": "images/layers-2x.png",
            "package/dist/images/marker-icon.png": "images/marker-icon.png",
            "package/dist/images/marker-icon-2x.png": "images/marker-icon-2x.png",
            "package/dist/images/marker-shadow.png": "images/marker-shadow.png",
            "package/LICENSE": "LICENSE",
        },
    ),
    Package(
        "leaflet.markercluster",
        "1.5.3",
        {
            "package/dist/leaflet.markercluster.js": "leaflet.markercluster.js",
            "package/dist/MarkerCluster.css": "MarkerCluster.css",
            "package/dist/MarkerCluster.Default.css": "MarkerCluster.Default.css",
            "package/MIT-LICENCE.txt": "LICENSE",
        },
    ),
    Package(
        "uplot",
        "1.6.32",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
            "package/LICENSE": "LICENSE",
        },
    ),
    Package(
        "topojson-client",
        "3.1.0",
        {"package/dist/topojson-client.min.js": "topojson-client.min.js", "package/LICENSE": "LICENSE"},
    ),
    # Natural Earth country outlines at 1:50m, as TopoJSON (topojson-client turns them into GeoJSON).
    Package("world-atlas", "2.0.2", {"package/countries-50m.json": "countries-50m.json", "package/LICENSE": "LICENSE"}),
)


class VendorError(Exception):
    """The registry's answer cannot be trusted or used; nothing was written for that package."""


def verify_integrity(tarball: bytes, integrity: str) -> None:
    """Raise `VendorError` unless `tarball` matches the registry's SRI `integrity` (sha512 only)."""
    algorithm, _, digest = integrity.partition("-")
    if algorithm != "sha512" or not digest:
        raise VendorError(f"integrity {integrity!r} is not a sha512 SRI digest; refusing the package")
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if actual != digest:
        raise VendorError(f"tarball digest sha512-{actual} does not match the registry's {integrity}")


def extract(package: Package, tarball: bytes) -> dict[str, bytes]:
    """The files `package` keeps, read from its (verified) tarball, by vendored path."""
    kept: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            target = package.files.get(member.name)
            if target is None or not member.isfile():
                continue
            reader = archive.extractfile(member)
            if reader is None:
                raise VendorError(f"{package.name}: {member.name} cannot be read from the tarball")
            kept[target] = reader.read()
    missing = sorted(set(package.files.values()) - kept.keys())
    if missing:
        raise VendorError(f"{package.name}@{package.version}: the tarball lacks {', '.join(missing)}")
    return kept


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data`, as the manifest records every file."""
    return hashlib.sha256(data).hexdigest()


def _get(url: str) -> bytes:
    if not url.startswith(REGISTRY + "/"):
        raise VendorError(f"refusing to fetch {url}: only {REGISTRY} is trusted")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (https registry only)
        body: bytes = response.read()
        return body


def fetch(package: Package) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest entry and the kept files of `package`, fetched and verified."""
    packument = json.loads(_get(f"{REGISTRY}/{package.name}"))
    release = packument.get("versions", {}).get(package.version)
    if release is None:
        raise VendorError(f"{package.name}@{package.version} is not on the registry")
    dist = release["dist"]
    tarball = _get(dist["tarball"])
    verify_integrity(tarball, dist["integrity"])
    files = extract(package, tarball)
    entry = {
        "package": package.name,
        "version": package.version,
        "license": release.get("license"),
        "tarball": dist["tarball"],
        "integrity": dist["integrity"],
        "files": {path: sha256_hex(data) for path, data in sorted(files.items())},
    }
    return entry, files


def vendor(directory: Path = VENDOR_DIR) -> list[dict[str, Any]]:
    """Fetch every package, replace `directory`'s contents with their files and write the manifest."""
    fetched = [fetch(package) for package in PACKAGES]  # everything verified before anything is replaced
    if directory.exists():
        shutil.rmtree(directory)
    manifest = []
    for entry, files in fetched:
        for path, data in files.items():
            target = directory / entry["package"] / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        manifest.append(entry)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main() -> int:
    """Vendor every package into the app's static folder; say what was written."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = vendor()
    except (VendorError, OSError) as exc:
        log.error("vendoring failed, nothing replaced: %s", exc)
        return 1
    for entry in manifest:
        log.info("%s@%s (%s): %d files", entry["package"], entry["version"], entry["license"], len(entry["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
