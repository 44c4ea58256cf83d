"""The web app's files: one build id over all of them, a strict CSP, and tile servers only when configured."""

from __future__ import annotations

import json
import re

import pytest

from api.ui.assets import STATIC_PREFIX, content_security_policy, load_bundle, tile_origin
from config import SettingsError


def test_ui_shell_names_only_this_builds_files() -> None:
    bundle = load_bundle()
    shell = bundle.shell.decode()

    urls = [
        url
        for url in re.findall(r'(?:src|href)="([^"]+)"', shell)
        if not url.startswith("#") and url != "/manifest.webmanifest"
    ]
    assert urls
    for url in urls:
        assert url.startswith(f"{STATIC_PREFIX}/{bundle.build}/"), url
        assert url.removeprefix(f"{STATIC_PREFIX}/{bundle.build}/") in bundle.assets, url
    assert "<script>" not in shell
    assert "style=" not in shell
    assert "<style" not in shell
    assert "__BUILD__" not in shell


def test_ui_service_worker_keeps_every_file_of_this_build_and_the_manifest_names_its_icon() -> None:
    bundle = load_bundle()
    worker = bundle.worker.decode()
    manifest = json.loads(bundle.manifest)

    listed = json.loads(re.search(r"const FILES = (\[.*\]);", worker).group(1))  # type: ignore[union-attr]
    assert listed == [f"{STATIC_PREFIX}/{bundle.build}/{path}" for path in sorted(bundle.assets)]
    assert f'const BUILD = "{bundle.build}";' in worker
    assert "__BUILD__" not in worker
    assert "__FILES__" not in worker
    icon = manifest["icons"][0]["src"]
    assert icon.removeprefix(f"{STATIC_PREFIX}/{bundle.build}/") in bundle.assets
    assert (manifest["start_url"], manifest["scope"]) == ("/", "/")


def test_ui_csp_allows_only_this_server_unless_a_tile_server_is_set() -> None:
    strict = content_security_policy(None)
    with_tiles = load_bundle("https://tiles.example.org:8443/{z}/{x}/{y}.png")

    assert "script-src 'self'" in strict
    assert "connect-src 'self'" in strict
    assert "default-src 'none'" in strict
    assert "unsafe" not in strict
    assert "img-src 'self' data:;" in strict + ";"
    assert "img-src 'self' data: https://tiles.example.org:8443" in with_tiles.csp
    assert 'content="https://tiles.example.org:8443/{z}/{x}/{y}.png"' in with_tiles.shell.decode()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://tiles.example/{z}/{x}/{y}.png", "http"),
        ("https://tiles.example/{z}/{x}.png", r"\{y\}"),
        ("https://tiles.example/{z}/{x}/{y}.png'; script-src *", "characters"),
    ],
)
def test_ui_refuses_an_unusable_tile_url(url: str, why: str) -> None:
    with pytest.raises(SettingsError, match=why):
        tile_origin(url)
