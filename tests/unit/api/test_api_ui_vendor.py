"""The vendored third-party files are exactly what the npm registry published (checked with no network)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest

from api.ui.vendor import (
    MANIFEST_NAME,
    PACKAGES,
    VENDOR_DIR,
    Package,
    VendorError,
    extract,
    sha256_hex,
    verify_integrity,
)


def test_vendor_every_file_matches_the_manifest_and_nothing_else_is_there() -> None:
    manifest = json.loads((VENDOR_DIR / MANIFEST_NAME).read_text(encoding="utf-8"))
    listed = {f"{entry['package']}/{path}": digest for entry in manifest for path, digest in entry["files"].items()}
    present = {
        str(path.relative_to(VENDOR_DIR))
        for path in VENDOR_DIR.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME
    }

    assert present == set(listed)
    for path, digest in listed.items():
        assert sha256_hex((VENDOR_DIR / path).read_bytes()) == digest, (
            f"{path} differs from what the registry published"
        )


def test_vendor_manifest_records_version_licence_and_integrity_of_every_package() -> None:
    manifest = {
        entry["package"]: entry for entry in json.loads((VENDOR_DIR / MANIFEST_NAME).read_text(encoding="utf-8"))
    }

    assert set(manifest) == {package.name for package in PACKAGES}
    for package in PACKAGES:
        entry = manifest[package.name]
        assert entry["version"] == package.version
        assert entry["license"]
        assert entry["integrity"].startswith("sha512-")
        assert "LICENSE" in entry["files"]


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_vendor_refuses_a_tarball_that_does_not_match_the_registry_integrity() -> None:
    tarball = _tarball({"package/a.js": b"1"})
    good = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()

    verify_integrity(tarball, good)
    with pytest.raises(VendorError, match="does not match"):
        verify_integrity(tarball + b"x", good)
    with pytest.raises(VendorError, match="sha512"):
        verify_integrity(tarball, "sha1-" + base64.b64encode(hashlib.sha1(tarball).digest()).decode())


def test_vendor_keeps_only_the_listed_files_and_fails_when_one_is_missing() -> None:
    package = Package("demo", "1.0.0", {"package/dist/a.js": "a.js", "package/LICENSE": "LICENSE"})

    kept = extract(package, _tarball({"package/dist/a.js": b"A", "package/LICENSE": b"L", "package/evil.js": b"E"}))

    assert kept == {"a.js": b"A", "LICENSE": b"L"}
    with pytest.raises(VendorError, match="lacks LICENSE"):
        extract(package, _tarball({"package/dist/a.js": b"A"}))
