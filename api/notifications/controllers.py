"""HTTP endpoints of notifications: channels (admins), and the outbox with its dead letters (operators)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import ADMIN, OPERATOR, principal_of
from api.notifications.schemas import Channel, ChannelPage, NotificationPage
from api.notifications.services import (
    NOTIFICATIONS_PAGE_DEFAULT,
    NOTIFICATIONS_PAGE_MAX,
    ChannelNameTakenError,
    add_channel,
    list_channels,
    list_notifications,
    remove_channel,
    retry_notification,
)
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found
from models.notifications import ChannelSpec, NotificationState, channel_problem


class ChannelController(Controller):
    """`/notification-channels`: webhooks and email lists that rules notify (`notify` of a rule)."""

    path = "/notification-channels"
    tags = ("notifications",)

    @get("/", summary="List notification channels", opt=OPERATOR)
    async def page(self, pool: NamedDependency[Pool]) -> ChannelPage:
        """Every channel in use, by id; secrets are never listed."""
        return ChannelPage(items=await list_channels(pool))

    @post(
        "/",
        summary="Add a notification channel",
        status_code=HTTP_201_CREATED,
        opt=ADMIN,
        raises=[ConflictException],
    )
    async def add(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], data: JSONBody[ChannelSpec]
    ) -> Channel:
        """Add a webhook (`url`, optional `secret`: one is made when none is given, and shown only in
        this answer) or an email channel (`recipients`); 400 with the reason when it cannot be, 409 when
        the name is taken."""
        problem = channel_problem(data)
        if problem is not None:
            raise bad_request(problem)
        try:
            return await add_channel(pool, data, principal_of(request).name)
        except ChannelNameTakenError as exc:
            raise conflict(str(exc)) from None

    @delete("/{channel_id:int}", summary="Remove a notification channel", status_code=HTTP_204_NO_CONTENT, opt=ADMIN)
    async def remove(self, pool: NamedDependency[Pool], channel_id: FromPath[int]) -> None:
        """Remove the channel: rules stop notifying it, and what was still pending for it is dead-lettered."""
        if not await remove_channel(pool, channel_id):
            raise not_found(f"no notification channel {channel_id}")


class NotificationController(Controller):
    """`/notifications`: every notification queued, how its delivery went, and the dead letters."""

    path = "/notifications"
    tags = ("notifications",)

    @get("/", summary="List notifications", opt=OPERATOR)
    async def page(
        self,
        *,
        pool: NamedDependency[Pool],
        notification_state: Annotated[
            NotificationState | None, QueryParameter(name="state", description="pending, sent or dead")
        ] = None,
        channel: Annotated[int | None, QueryParameter(description="only this channel's")] = None,
        alert: Annotated[int | None, QueryParameter(description="only this alert's")] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=NOTIFICATIONS_PAGE_MAX, description="rows per page")
        ] = NOTIFICATIONS_PAGE_DEFAULT,
        cursor: Annotated[int | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
    ) -> NotificationPage:
        """Notifications newest first, with their attempts and last error (`state=dead`: the dead letters)."""
        filters = {"state": notification_state, "channel": channel, "alert": alert, "cursor": cursor}
        items, next_cursor = await list_notifications(pool, filters, limit)
        return NotificationPage(items=items, next_cursor=next_cursor)

    @post(
        "/{notification_id:int}/retry",
        summary="Retry a dead notification",
        status_code=HTTP_204_NO_CONTENT,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def retry(self, pool: NamedDependency[Pool], notification_id: FromPath[int]) -> None:
        """Send a dead-lettered notification again, from its first attempt; 409 unless it is dead."""
        if not await retry_notification(pool, notification_id):
            raise conflict(f"notification {notification_id} is not dead (or does not exist)")
