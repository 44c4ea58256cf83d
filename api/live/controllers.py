"""`/api/v1/live`: the WebSocket and, on the same path, its polling fallback (`GET`).

Litestar routes a WebSocket handshake and a plain `GET` of one path to different handlers, so both
share the address: a client that cannot hold a WebSocket polls the same URL with the same selection.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, WebSocket, get, websocket
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from redis.asyncio import Redis

from api.auth import TokenIssuer, principal_of, renewed
from api.live.cursor import parse_cursor
from api.live.hub import LiveHub
from api.live.poll import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_S, PollRequest, poll
from api.live.schemas import ALL_DEVICES, MAX_DEVICES_PER_REQUEST, SERVER_MESSAGES, ErrorMessage, LivePage
from api.live.selection import BBox, Selection, bbox_problem
from api.live.session import LiveSession
from api.live.watch import CLOSE_CREDENTIAL_ENDED, CredentialWatch, Ended, unless_ended
from api.problems import bad_request, forbidden, unauthorized
from api.stopping import stopping_of
from models.topics import is_device_id


@websocket("/live", name="live")
async def live(
    *,
    socket: WebSocket[Any, Any, Any],
    hub: NamedDependency[LiveHub],
    redis: NamedDependency[Redis],
    watch: NamedDependency[CredentialWatch],
    tokens: NamedDependency[TokenIssuer],
    since: Annotated[str | None, QueryParameter(description="resume after this cursor")] = None,
) -> None:
    """Subscribe to devices, groups or boxes; receive snapshots (or, with `since`, what was missed),
    then updates as they happen.

    Credentials go in the handshake: `?token=<jwt or API key>` (browsers cannot set headers on a
    WebSocket), or the `Authorization` / `X-API-Key` headers. The connection is closed (4401, 4403) when
    they end; an `auth` message with a fresh token keeps it open.
    """
    principal = principal_of(socket)
    cursor = parse_cursor(since) if since is not None else None
    await socket.accept()
    watched = watch.watch(principal)
    try:
        session = LiveSession(
            socket,
            hub,
            redis,
            group_limit=principal.group,
            since=cursor,
            watched=watched,
            renew=lambda current, token: renewed(current, tokens, token),
        )
        if since is not None and cursor is None:
            # Said once, then served as a fresh client: snapshots instead of a replay.
            await socket.send_data(SERVER_MESSAGES.encode(ErrorMessage("since is not a stream entry id")), "text")
        await session.serve()
    finally:
        watch.forget(watched)


def _selection(devices: str | None, group: str | None, bbox: str | None) -> Selection:
    given = [name for name, value in (("devices", devices), ("group", group), ("bbox", bbox)) if value is not None]
    if len(given) > 1:
        raise bad_request("name at most one of devices, group or bbox")
    if devices is not None:
        ids = [device for device in devices.split(",") if device]
        if not ids or len(ids) > MAX_DEVICES_PER_REQUEST:
            raise bad_request(f"devices takes 1 to {MAX_DEVICES_PER_REQUEST} comma-separated device ids")
        bad = [device for device in ids if device != ALL_DEVICES and not is_device_id(device)]
        if bad:
            raise bad_request(f"devices: {bad[0]!r} is not a device id")
        return Selection(everything=ALL_DEVICES in ids, devices={device for device in ids if device != ALL_DEVICES})
    if group is not None:
        if not group:
            raise bad_request("group must not be empty")
        return Selection(groups={group})
    if bbox is not None:
        try:
            values = [float(part) for part in bbox.split(",")]
        except ValueError:
            raise bad_request("bbox takes four numbers: min_lon,min_lat,max_lon,max_lat") from None
        problem = bbox_problem(values)
        if problem is not None:
            raise bad_request(problem)
        return Selection(boxes={BBox(*values): set()})
    return Selection(everything=True)


@get("/live", name="live-poll", summary="Live updates after a cursor (polling fallback of the WebSocket)")
async def live_poll(
    *,
    request: Request[Any, Any, Any],
    hub: NamedDependency[LiveHub],
    redis: NamedDependency[Redis],
    watch: NamedDependency[CredentialWatch],
    since: Annotated[str | None, QueryParameter(description="`next_cursor` (or a WebSocket `cursor`)")] = None,
    devices: Annotated[str | None, QueryParameter(description="comma-separated device ids, or *")] = None,
    group: Annotated[str | None, QueryParameter(description="a device group")] = None,
    bbox: Annotated[str | None, QueryParameter(description="min_lon,min_lat,max_lon,max_lat")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="updates per answer")] = DEFAULT_LIMIT,
    wait: Annotated[
        float, QueryParameter(ge=0, le=MAX_WAIT_S, description="seconds to wait for a first update (long poll)")
    ] = 0,
) -> LivePage:
    """The updates after `since` that match the selection (every device when none is named), one per
    stream entry, and `next_cursor` to pass as `since` next time. Without `since`: from now on."""
    cursor = None
    if since is not None:
        cursor = parse_cursor(since)
        if cursor is None:
            raise bad_request("since is not a stream entry id; pass next_cursor of the previous answer unchanged")
    selection = _selection(devices, group, bbox)
    principal = principal_of(request)
    checked = PollRequest(selection, cursor, limit, wait, principal.group)
    watched = watch.watch(principal)
    try:
        answer = await unless_ended(watched, poll(redis, hub, checked, stopping=stopping_of(request.app.state)))
    finally:
        watch.forget(watched)
    if isinstance(answer, Ended):
        # The credential ended while the request waited: answered as if it had arrived now.
        raise unauthorized(answer.reason) if answer.code == CLOSE_CREDENTIAL_ENDED else forbidden(answer.reason)
    return answer
