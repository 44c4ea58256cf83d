"""HTTP endpoints of alerts: listed and read by every role; acknowledged, cleared and commented on by
operators and admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.alerts.schemas import Alert, AlertAction, AlertPage, Comment, CommentPost
from api.alerts.services import (
    ALERTS_PAGE_DEFAULT,
    ALERTS_PAGE_MAX,
    NotOpen,
    act_on_alert,
    comment_on_alert,
    list_alerts,
    read_alert,
)
from api.auth import OPERATOR, principal_of
from api.pool import Pool
from api.problems import ConflictException, conflict, not_found
from models.rules import AlertState, Severity


class AlertController(Controller):
    """`/alerts`: what the rules engine raised, and what operators did about it."""

    path = "/alerts"
    tags = ("alerts",)

    @get("/", summary="List alerts")
    async def page(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        # `state` is a reserved handler argument in Litestar: the query parameter keeps the name.
        alert_state: Annotated[
            AlertState | None, QueryParameter(name="state", description="only alerts in this state")
        ] = None,
        severity: Annotated[Severity | None, QueryParameter(description="only alerts of this severity")] = None,
        device: Annotated[str | None, QueryParameter(max_length=64, description="only this device's")] = None,
        group: Annotated[str | None, QueryParameter(max_length=128, description="only devices of this group")] = None,
        rule: Annotated[int | None, QueryParameter(description="only this rule's")] = None,
        since: Annotated[datetime | None, QueryParameter(description="started at or after (device time)")] = None,
        until: Annotated[datetime | None, QueryParameter(description="started before (device time)")] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=ALERTS_PAGE_MAX, description="rows per page")
        ] = ALERTS_PAGE_DEFAULT,
        cursor: Annotated[int | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
    ) -> AlertPage:
        """Alerts newest first, filtered (for a group-limited API key: its group's devices only)."""
        filters = {
            "state": alert_state,
            "severity": severity,
            "device": device,
            "group": group,
            "rule": rule,
            "since": since,
            "until": until,
            "cursor": cursor,
            "visible_group": principal_of(request).group,
        }
        return await list_alerts(pool, limit=limit, filters=filters)

    @get("/{alert_id:int}", summary="An alert")
    async def details(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], alert_id: FromPath[int]
    ) -> Alert:
        """The alert with its comments."""
        return await _alert_or_404(pool, alert_id, principal_of(request).group)

    @post(
        "/{alert_id:int}/acknowledge",
        summary="Acknowledge an alert",
        status_code=HTTP_200_OK,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        alert_id: FromPath[int],
        data: JSONBody[AlertAction | None] = None,
    ) -> Alert:
        """Acknowledge an active alert (who and when are recorded); 409 when it is not active."""
        return await _act(request, pool, alert_id, "acknowledged", data)

    @post(
        "/{alert_id:int}/clear",
        summary="Clear an alert",
        status_code=HTTP_200_OK,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def clear(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        alert_id: FromPath[int],
        data: JSONBody[AlertAction | None] = None,
    ) -> Alert:
        """Clear an open alert by hand; the engine opens no new one for the rule and device until the
        condition has cleared and triggered again. 409 when it is not open."""
        return await _act(request, pool, alert_id, "cleared", data)

    @post("/{alert_id:int}/comments", summary="Comment on an alert", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def comment(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        alert_id: FromPath[int],
        data: JSONBody[CommentPost],
    ) -> Comment:
        """Add a comment to the alert, in any state."""
        principal = principal_of(request)
        await _alert_or_404(pool, alert_id, principal.group)
        added = await comment_on_alert(pool, alert_id, principal.name, data.body)
        if added is None:
            raise not_found(f"no alert {alert_id}")
        return added


async def _alert_or_404(pool: Pool, alert_id: int, visible_group: str | None) -> Alert:
    alert = await read_alert(pool, alert_id, visible_group)
    if alert is None:
        raise not_found(f"no alert {alert_id}")
    return alert


async def _act(
    request: Request[Any, Any, Any],
    pool: Pool,
    alert_id: int,
    action: Literal["acknowledged", "cleared"],
    data: AlertAction | None,
) -> Alert:
    principal = principal_of(request)
    await _alert_or_404(pool, alert_id, principal.group)
    done = await act_on_alert(pool, alert_id, action, principal.name, data.comment if data is not None else None)
    if done is False:
        raise not_found(f"no alert {alert_id}")
    if isinstance(done, NotOpen):
        allowed = "an active alert" if action == "acknowledged" else "an open (active or acknowledged) alert"
        raise conflict(f"alert {alert_id} is {done.state}: only {allowed} can be {action}")
    return await _alert_or_404(pool, alert_id, principal.group)
