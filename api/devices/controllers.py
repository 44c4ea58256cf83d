"""HTTP endpoints of the device registry, device provisioning and last-known state.

Reading is for every caller (a group-limited API key sees its group's devices only, and any other device
exactly like an unknown one); operators may change a device; provisioning, new secrets and deleting are
for admins. Every answer to a change says whether the broker has it yet (`broker`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from redis.asyncio import Redis

from api.auth import ADMIN, OPERATOR, may_see_device, principal_of
from api.devices.provision import UNCHANGED, BrokerDelivery, Conflict, DeviceAccounts
from api.devices.registry import GatewayError, delete_device, patch_device, read_device, refused_gateway
from api.devices.rejected import REFUSED_PAGE_DEFAULT, REFUSED_PAGE_MAX, list_refused
from api.devices.schemas import (
    GROUP_PATTERN,
    KIND_PATTERN,
    DeletedDevice,
    DeviceChange,
    DeviceCreate,
    DeviceDetails,
    DevicePage,
    DevicePatch,
    ProvisionedDevice,
    RefusedPage,
    Status,
)
from api.devices.services import DEVICES_PAGE_DEFAULT, DEVICES_PAGE_MAX, DeviceFilter, list_devices, read_state
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found
from broker.accounts import Credential
from models.state import DeviceState
from models.topics import DEVICE_ID_PATTERN, is_device_id

METADATA_MAX_BYTES: Final = 16 * 1024
SEARCH_MAX_CHARS: Final = 64
MAX_CURSOR_DIGITS: Final = 19  # a bigint
# A response carrying a secret must not be cached (as for tokens, RFC 6749 §5.1).
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _checked_id(device_id: str) -> str:
    if not is_device_id(device_id):
        raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    return device_id


def _checked_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > MAX_CURSOR_DIGITS:
        raise bad_request("cursor is not valid; pass next_cursor of the previous page unchanged")
    return int(cursor)


RefusedLimit = Annotated[int, QueryParameter(ge=1, le=REFUSED_PAGE_MAX, description="refusals per page")]
RefusedCursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")]
RefusedSince = Annotated[
    datetime | None, QueryParameter(description="only refusals received at or after this time (RFC 3339)")
]


def _check_metadata(metadata: object) -> None:
    if metadata is not msgspec.UNSET and len(msgspec.json.encode(metadata)) > METADATA_MAX_BYTES:
        raise bad_request(f"metadata is larger than {METADATA_MAX_BYTES} bytes as JSON")


async def _provisioned(
    pool: Pool, broker_delivery: BrokerDelivery, credential: Credential, status_code: int
) -> Response[ProvisionedDevice]:
    """Answer with a new secret (this once), the device, and whether the brokers have it yet."""
    broker = await broker_delivery.wait()
    device = await read_device(pool, credential.username)
    if device is None:
        raise not_found(f"device {credential.username!r} was deleted meanwhile")
    answer = ProvisionedDevice(device=device, secret=credential.secret, broker=broker)
    return Response(answer, status_code=status_code, headers=_NO_STORE)


class DeviceController(Controller):
    """`/devices`: the registry in PostgreSQL, each device's broker account, and its state cached in Redis."""

    path = "/devices"
    tags = ("devices",)

    @get("/", summary="List devices")
    async def page(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        limit: Annotated[
            int, QueryParameter(ge=1, le=DEVICES_PAGE_MAX, description="rows per page")
        ] = DEVICES_PAGE_DEFAULT,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
        group: Annotated[str | None, QueryParameter(pattern=GROUP_PATTERN, description="only this group")] = None,
        kind: Annotated[str | None, QueryParameter(pattern=KIND_PATTERN, description="only this kind")] = None,
        status: Annotated[
            Status | None,
            QueryParameter(description="online, offline or unknown (presence; not disabled), or disabled"),
        ] = None,
        q: Annotated[
            str | None,
            QueryParameter(min_length=1, max_length=SEARCH_MAX_CHARS, description="text in the id or name, any case"),
        ] = None,
    ) -> DevicePage:
        """Devices in id order, a page at a time, filtered (for a group-limited API key: its group's only)."""
        if cursor is not None and not is_device_id(cursor):
            raise bad_request("cursor is not valid; pass next_cursor of the previous page unchanged")
        where = DeviceFilter(group=group, kind=kind, status=status, text=q)
        return await list_devices(pool, limit=limit, after=cursor, group=principal_of(request).group, where=where)

    @post("/", summary="Provision a device", status_code=HTTP_201_CREATED, opt=ADMIN, raises=[ConflictException])
    async def create(
        self,
        pool: NamedDependency[Pool],
        device_accounts: NamedDependency[DeviceAccounts],
        broker_delivery: NamedDependency[BrokerDelivery],
        data: JSONBody[DeviceCreate],
    ) -> Response[ProvisionedDevice]:
        """Register a device and make its broker account; the secret is in this answer only. 409 when the id
        is registered already (or names another account); 400 when `gateway` is not a device of kind `gateway`."""
        _check_metadata(data.metadata)
        if data.gateway is not None and (reason := await refused_gateway(pool, data.id, data.gateway)):
            raise bad_request(reason)
        created = await device_accounts.provision(data)
        if isinstance(created, Conflict):
            raise conflict(created.reason)
        return await _provisioned(pool, broker_delivery, created, HTTP_201_CREATED)

    @get("/{device_id:str}", summary="A device in detail")
    async def details(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], device_id: FromPath[str]
    ) -> DeviceDetails:
        """The registry row, the presence the bridge last recorded, and the broker account (never a secret)."""
        missing = not_found(f"no device {_checked_id(device_id)!r}")
        if not await may_see_device(principal_of(request), pool, device_id):
            raise missing
        device = await read_device(pool, device_id)
        if device is None:
            raise missing
        return device

    @patch("/{device_id:str}", summary="Change a device", opt=OPERATOR)
    async def change(
        self,
        pool: NamedDependency[Pool],
        broker_delivery: NamedDependency[BrokerDelivery],
        device_id: FromPath[str],
        data: JSONBody[DevicePatch],
    ) -> DeviceChange:
        """Change name, kind, group, metadata, disabled, gateway or site; disabling also takes the device off the
        broker. 400 when `gateway` is not a device of kind `gateway`, or a gateway with children changes kind."""
        _checked_id(device_id)
        _check_metadata(data.metadata)
        try:
            patched = await patch_device(pool, device_id, data)
        except GatewayError as exc:
            raise bad_request(str(exc)) from None
        if patched is None:
            raise not_found(f"no device {device_id!r}")
        broker = await broker_delivery.wait() if patched.broker_changed else UNCHANGED
        return DeviceChange(device=patched.device, broker=broker)

    @delete("/{device_id:str}", summary="Delete a device", status_code=200, opt=ADMIN)
    async def remove(
        self,
        pool: NamedDependency[Pool],
        redis: NamedDependency[Redis],
        broker_delivery: NamedDependency[BrokerDelivery],
        device_id: FromPath[str],
    ) -> DeletedDevice:
        """Delete the device, its broker account (its connection ends) and its cached state; its telemetry
        history is kept until retention removes it."""
        if not await delete_device(pool, redis, _checked_id(device_id)):
            raise not_found(f"no device {device_id!r}")
        return DeletedDevice(id=device_id, broker=await broker_delivery.wait())

    @post(
        "/{device_id:str}/secret",
        summary="Give a device a new secret",
        status_code=200,
        opt=ADMIN,
        raises=[ConflictException],
    )
    async def new_secret(
        self,
        pool: NamedDependency[Pool],
        device_accounts: NamedDependency[DeviceAccounts],
        broker_delivery: NamedDependency[BrokerDelivery],
        device_id: FromPath[str],
        reinstate: Annotated[
            bool, QueryParameter(description="also for a device whose account was revoked (`fleet devices revoke`)")
        ] = False,
    ) -> Response[ProvisionedDevice]:
        """A new secret, in this answer only; the old one stops working (and its connection ends) when the
        brokers' agents apply it. A device the bridge registered without an account gets its first one."""
        rotated = await device_accounts.new_secret(_checked_id(device_id), reinstate=reinstate)
        if rotated is None:
            raise not_found(f"no device {device_id!r}")
        if isinstance(rotated, Conflict):
            raise conflict(rotated.reason)
        return await _provisioned(pool, broker_delivery, rotated, HTTP_200_OK)

    @get("/{device_id:str}/state", summary="Last-known state of a device")
    async def state(
        self,
        request: Request[Any, Any, Any],
        redis: NamedDependency[Redis],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
    ) -> DeviceState:
        """The newest value of every state field, each with the device time and seq that set it."""
        missing = not_found(f"no state for device {_checked_id(device_id)!r}")
        if not await may_see_device(principal_of(request), pool, device_id):
            raise missing
        state = await read_state(redis, device_id)
        if state is None:
            raise missing
        return state

    @get("/{device_id:str}/rejected", summary="Messages of a device the bridge refused")
    async def rejected(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
        limit: RefusedLimit = REFUSED_PAGE_DEFAULT,
        cursor: RefusedCursor = None,
        since: RefusedSince = None,
    ) -> RefusedPage:
        """What the bridge refused from this device, newest first: the reason, when it was received, the
        sample's index, seq and boot where known, and the start of the payload (cut short, escaped)."""
        before = _checked_cursor(cursor)
        if not await may_see_device(principal_of(request), pool, _checked_id(device_id)):
            raise not_found(f"no device {device_id!r}")
        return await list_refused(pool, limit=limit, before=before, device_id=device_id, since=since)


class RefusedController(Controller):
    """`/rejected`: every refused message of the fleet, for admins (a refusal may name no known device)."""

    path = "/rejected"
    tags = ("devices",)
    opt = ADMIN

    @get("/", summary="Messages the bridge refused, fleet-wide")
    async def page(
        self,
        *,
        pool: NamedDependency[Pool],
        limit: RefusedLimit = REFUSED_PAGE_DEFAULT,
        cursor: RefusedCursor = None,
        since: RefusedSince = None,
        device: Annotated[
            str | None, QueryParameter(pattern=f"^{DEVICE_ID_PATTERN}$", description="only this device's refusals")
        ] = None,
    ) -> RefusedPage:
        """Refused messages and samples of every device, newest first, optionally of one device and since
        a time; also those on topics outside the grammar, which name no device."""
        return await list_refused(pool, limit=limit, before=_checked_cursor(cursor), device_id=device, since=since)
