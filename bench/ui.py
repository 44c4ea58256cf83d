"""Operator web app bench: the page in Debian's Chromium over a fleet of `--devices` devices.

Private Redis and PostgreSQL (bench/servers.py) hold a registry and a state per device, written directly
as bench/fleet_state.py does (positions spread over Germany); the API runs in this process. Chromium
(headless, `/usr/bin/chromium`) signs in and the bench reads, through the page's own `window.__fleet`
hook and the DOM:

* sign-in to every device in the fleet table: the registry's pages and the `"*"` snapshots, rendered;
* sorting the table by another column (10,000 rows re-sorted, the rows in view re-filled);
* scrolling the table from top to bottom, one step per animation frame: frame times;
* the map zoomed out over Germany: time until a marker per device in view (the bbox subscription's
  snapshots, clustered).

    .venv/bin/python bench/ui.py --devices 10000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet_state import arrange  # noqa: E402 - bench/fleet_state.py, beside this script
from servers import start_servers  # noqa: E402

from api.server import running  # noqa: E402
from config import load_settings  # noqa: E402
from stack.process import ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = "bench"
PASSWORD = "bench password of the ui bench"
SCROLL_FRAMES = 240
SCROLL_JS = """async (frames) => {
  const view = document.getElementById("table-view");
  const step = (view.scrollHeight - view.clientHeight) / frames;
  const times = [];
  let last = performance.now();
  for (let i = 1; i <= frames; i++) {
    await new Promise((done) => requestAnimationFrame(() => { view.scrollTop = i * step; done(); }));
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return times;
}"""


async def add_user(database_url: str) -> None:
    hashed = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO users (username, role, password_hash) VALUES (%s, 'viewer', %s)", (USER, hashed)
        )


async def wait_for(tab: Any, expression: str, timeout_s: float = 120.0) -> float:
    """Seconds until `expression` is truthy in the page."""
    started = time.perf_counter()
    await tab.wait_for_function(expression, timeout=timeout_s * 1000, polling="raf")
    return time.perf_counter() - started


async def run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from playwright.async_api import async_playwright

    await arrange(urls["database"], urls["redis"], args.devices, args.seed)
    await add_user(urls["database"])
    settings = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": urls["redis"],
            "FLEETBRIDGE_DATABASE_URL": urls["database"],
            "FLEETBRIDGE_API_JWT_SECRET": "bench-secret-of-the-operator-app-bench-0123",
        }
    )
    async with running(settings) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        # Playwright's wait_for_function evaluates its predicate as a string, which the app's policy forbids.
        tab = await browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        await tab.goto(url + "/#/table")
        await tab.fill("#login [name=username]", USER)
        await tab.fill("#login [name=password]", PASSWORD)
        started = time.perf_counter()
        await tab.click("#login button[type=submit]")
        expected = f"{args.devices} devices"
        await wait_for(tab, f"document.getElementById('table-count').textContent === {expected!r}")
        listed = time.perf_counter() - started
        await wait_for(tab, f"window.__fleet.store.states.size >= {min(args.devices, 10_000)}")
        loaded = time.perf_counter() - started
        print(f"operator app, {args.devices} devices (Chromium headless, API in-process, same 2-core machine):")
        print(f"  sign-in to every device listed in the table   {listed * 1000:8.0f} ms")
        print(f"  sign-in to every device's live state held     {loaded * 1000:8.0f} ms")

        started = time.perf_counter()
        await tab.click('[data-sort="fuel"]')
        await wait_for(tab, "document.querySelector('[data-sort=\"fuel\"]').textContent.endsWith('▲')")
        await tab.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        print(f"  sort by fuel (re-sort, refill rows in view)   {(time.perf_counter() - started) * 1000:8.0f} ms")

        frames = await tab.evaluate(SCROLL_JS, SCROLL_FRAMES)
        ordered = sorted(frames)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        rows = await tab.evaluate("document.querySelectorAll('#table-view [data-device]').length")
        print(
            f"  scroll top to bottom, {SCROLL_FRAMES} frames: median {statistics.median(ordered):.1f} ms, "
            f"p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms per frame; {rows} rows in the page"
        )

        await tab.evaluate("location.hash = '#/map'")
        started = time.perf_counter()
        for _ in range(5):
            await tab.click(".leaflet-control-zoom-out")
            await tab.wait_for_selector(".leaflet-zoom-anim", state="detached")
        shown = await wait_for(tab, "document.querySelectorAll('.marker-cluster').length > 0")
        total = time.perf_counter() - started
        markers = await tab.evaluate("[...window.__fleet.store.states.values()].filter((s) => s.position).length")
        print(
            f"  map zoomed out to Germany: clusters shown after {total * 1000:.0f} ms ({shown * 1000:.0f} ms after the last zoom); {markers} positions held"
        )
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        print(f"no {CHROMIUM}: `./dev install` installs Debian's chromium", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="fb-ui-"))
    base.chmod(0o755)
    servers: list[ServerProcess] = []
    try:
        _, redis_server, postgres = start_servers(base, servers)
        asyncio.run(run(args, {"redis": redis_server.url, "database": postgres.url}))
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
