"""An alert's comments on the alerts screen, in real browsers: an operator adds one, a viewer with the
list open sees it arrive (the live `commented` message) and has no way to add one."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e import test_ui_operator_app as ui
from tests.e2e.conftest import eventually
from tests.e2e.test_live_corrections import send
from tests.e2e.test_ui_operator_app import CHROMIUM, UI_TIMEOUT_S, open_app, raise_alert, sample, sign_in, until_js

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no {CHROMIUM}"),
]
# The app tests' fixtures, named here so that pytest finds them for this module too.
browser, screens = ui.browser, ui.screens


async def test_ui_operators_comment_on_an_alert_and_viewers_read_the_comments_live(
    browser: Any, api_url: str, database_url: str, mqtt_url: str, screens: Path
) -> None:
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, engine_temp=115.0)])
    alert = await raise_alert(database_url, device)
    row = f'#a-rows tr[data-alert="{alert}"]'
    comments = f"[...document.querySelectorAll('{row} .comment')].map((c) => c.textContent)"
    async with open_app(browser, api_url) as (operator, _), open_app(browser, api_url) as (viewer, seen):
        who = await sign_in(operator, database_url, role="operator")
        await sign_in(viewer, database_url, role="viewer")
        for tab in (operator, viewer):
            await tab.goto(tab.url.split("#")[0] + "#/alerts")
            await tab.click(f"{row} .comments summary")
            await tab.wait_for_selector(f"{row} .comment-list li")
        assert await viewer.text_content(f"{row} .comments summary") == "Comments (0)"
        assert await viewer.locator(f"{row} .comment-form").count() == 0  # no way to add one
        assert await viewer.locator(f"{row} input").count() == 0

        await operator.fill(f"{row} .comment-form input", "tyre pressure checked")
        await operator.click(f"{row} .add-comment")
        mine = await eventually(
            until_js(operator, comments), lambda c: len(c) == 1, timeout_s=UI_TIMEOUT_S, what="the comment"
        )
        assert mine[0].startswith(who + ", ")
        assert mine[0].endswith(": tyre pressure checked")
        assert await operator.input_value(f"{row} .comment-form input") == ""
        theirs = await eventually(
            until_js(viewer, comments), lambda c: len(c) == 1, timeout_s=UI_TIMEOUT_S, what="the comment, live"
        )
        assert theirs == mine
        assert await viewer.text_content(f"{row} .comments summary") == "Comments (1)"
        assert any(m.get("type") == "alert" and m["event"] == "commented" for m in seen.received)

        # An acknowledgement's comment is one of the alert's comments too.
        await operator.fill(f"{row} .a-actions input", "driver informed")
        await operator.click(f"{row} .ack")
        await eventually(
            until_js(viewer, comments), lambda c: len(c) == 2, timeout_s=UI_TIMEOUT_S, what="the second comment"
        )
        await viewer.screenshot(path=screens / "alert-comments-viewer.png")
        await operator.screenshot(path=screens / "alert-comments-operator.png")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        stored = await (
            await conn.execute("SELECT author, body FROM alert_comments WHERE alert_id = %s ORDER BY id", (alert,))
        ).fetchall()
    assert stored == [(who, "tyre pressure checked"), (who, "driver informed")]
