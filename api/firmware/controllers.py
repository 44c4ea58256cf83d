"""HTTP endpoints of firmware: images uploaded and deleted by admins, listed by every role, downloaded by
devices with the link their update command carries (byte ranges: a download resumes), and updates sent
to one device by operators (docs/ota.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_206_PARTIAL_CONTENT

from api.auth import ADMIN, OPERATOR, PUBLIC, principal_of
from api.commands.schemas import Command, CommandPost
from api.commands.submit import CommandsBackend, submit_command
from api.firmware.links import FirmwareBackend, update_args
from api.firmware.schemas import FirmwareImage, FirmwareUpdatePost
from api.firmware.services import (
    DuplicateVersionError,
    delete_image,
    digest_problem,
    image_bytes,
    list_images,
    read_image,
    store_image,
)
from api.pool import Pool
from api.problems import (
    ConflictException,
    RangeNotSatisfiableException,
    bad_request,
    conflict,
    not_found,
    range_not_satisfiable,
    unauthorized,
)
from models.commands import CATALOGUE
from models.firmware import (
    SHA256_PATTERN,
    VERSION_PATTERN,
    ByteRange,
    RangeNotSatisfiableError,
    check_download_token,
    parse_range,
)

STATE_KEY: Final = "firmware"
IMAGE_MAX_BYTES: Final = 64 * 1024 * 1024
KIND_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def provide_firmware(state: State) -> FirmwareBackend:
    """The firmware backend, from `app.state`."""
    backend = state.get(STATE_KEY)
    if not isinstance(backend, FirmwareBackend):
        raise TypeError("app.state holds no FirmwareBackend")
    return backend


class FirmwareController(Controller):
    """`/firmware`: the images devices can be updated to."""

    path = "/firmware"
    tags = ("firmware",)

    @post(
        "/",
        summary="Upload a firmware image",
        status_code=HTTP_201_CREATED,
        opt=ADMIN,
        raises=[ConflictException],
        request_max_body_size=IMAGE_MAX_BYTES,
    )
    async def upload(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        kind: Annotated[str, QueryParameter(pattern=KIND_PATTERN, description="the device kind it is for")],
        version: Annotated[str, QueryParameter(pattern=VERSION_PATTERN, description="its version")],
        sha256: Annotated[str, QueryParameter(pattern=SHA256_PATTERN, description="its SHA-256, hex, lower case")],
        notes: Annotated[str | None, QueryParameter(max_length=2000, description="release notes")] = None,
    ) -> FirmwareImage:
        """The request body is the image itself (`application/octet-stream`, at most 64 MiB); refused with
        400 when its SHA-256 is not the one stated, 409 when its kind has that version already."""
        data = await request.body()
        problem = digest_problem(data, sha256)
        if problem is not None:
            raise bad_request(problem)
        try:
            return await store_image(
                pool, kind=kind, version=version, data=data, notes=notes, who=principal_of(request).name
            )
        except DuplicateVersionError as exc:
            raise conflict(str(exc)) from None

    @get("/", summary="Firmware images")
    async def page(
        self,
        pool: NamedDependency[Pool],
        kind: Annotated[str | None, QueryParameter(pattern=KIND_PATTERN, description="only for this kind")] = None,
    ) -> list[FirmwareImage]:
        """Every image, newest first."""
        return await list_images(pool, kind)

    @get("/{image_id:int}", summary="A firmware image")
    async def details(self, pool: NamedDependency[Pool], image_id: FromPath[int]) -> FirmwareImage:
        """The image's description (its bytes: `/image`, with a device's link)."""
        image = await read_image(pool, image_id)
        if image is None:
            raise not_found(f"no firmware image {image_id}")
        return image

    @delete(
        "/{image_id:int}",
        summary="Delete a firmware image",
        status_code=HTTP_200_OK,
        opt=ADMIN,
        raises=[ConflictException],
    )
    async def remove(self, pool: NamedDependency[Pool], image_id: FromPath[int]) -> FirmwareImage:
        """Delete an image; 409 while an update that names it is not finished."""
        image = await read_image(pool, image_id)
        done = await delete_image(pool, image_id)
        if image is None or done is False:
            raise not_found(f"no firmware image {image_id}")
        if isinstance(done, str):
            raise conflict(done)
        return image

    @get(
        "/{image_id:int}/image",
        summary="Download a firmware image (devices)",
        opt=PUBLIC,
        raises=[NotAuthorizedException, RangeNotSatisfiableException],
        media_type="application/octet-stream",
    )
    async def download(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        firmware: NamedDependency[FirmwareBackend],
        image_id: FromPath[int],
        token: Annotated[str, QueryParameter(max_length=300, description="from the update command's `url`")],
    ) -> Stream:
        """The image's bytes for the device its update command's link names, until the link expires. A
        `Range: bytes=…` request gets 206 and that range, so a cut download resumes where it stopped; 416
        past the end. `ETag` is the image's SHA-256."""
        if check_download_token(firmware.link_secret, image_id, token, datetime.now(UTC)) is None:
            raise unauthorized("the download link is not valid, or has expired: ask for the update again")
        image = await read_image(pool, image_id)
        if image is None:
            raise not_found(f"no firmware image {image_id}")
        try:
            asked = parse_range(request.headers.get("range"), image.size)
        except RangeNotSatisfiableError as exc:
            raise range_not_satisfiable(str(exc), image.size) from None
        span = asked or ByteRange(0, image.size - 1, image.size)
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{image.sha256}"', "Content-Length": str(span.length)}
        if asked is not None:
            headers["Content-Range"] = span.content_range()
        return Stream(
            image_bytes(pool, image_id, span),
            status_code=HTTP_200_OK if asked is None else HTTP_206_PARTIAL_CONTENT,
            headers=headers,
            media_type="application/octet-stream",
        )


@post(
    "/devices/{device_id:str}/firmware-update",
    tags=["firmware"],
    summary="Update a device's firmware",
    status_code=HTTP_201_CREATED,
    opt=OPERATOR,
    raises=[ConflictException],
)
async def firmware_update(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    commands: NamedDependency[CommandsBackend],
    firmware: NamedDependency[FirmwareBackend],
    device_id: FromPath[str],
    data: JSONBody[FirmwareUpdatePost],
) -> Response[Command]:
    """Send the device an `update_firmware` command for an image of its kind, with a download link for
    this device alone that lasts until 6 h after the command's expiry. The device reports its progress on
    `fleet/v1/{id}/ota` (transitions `progress` of the command) and answers `succeeded` running the new
    version, or `failed` keeping its old one."""
    image = await read_image(pool, data.image_id)
    if image is None:
        raise bad_request(f"no firmware image {data.image_id}")
    settings = commands.settings
    expires_at = datetime.now(UTC) + timedelta(seconds=data.expires_in_s or settings.default_expiry_s)
    base = firmware.public_url or str(request.base_url)
    args = update_args(firmware, image, device_id, base=base, expires_at=expires_at)
    kind_of = await _kind_of(pool, device_id)
    if kind_of is not None and kind_of != image.kind:
        raise bad_request(f"image {image.id} is for {image.kind!r} devices; {device_id!r} is a {kind_of!r}")
    post_data = CommandPost(name=CATALOGUE["update_firmware"].name, args=args, expires_at=expires_at)
    return await submit_command(
        pool, commands, principal_of(request), device_id, post_data, idempotency_key=None, internal=True
    )


async def _kind_of(pool: Pool, device_id: str) -> str | None:
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT kind FROM devices WHERE id = %s", (device_id,))
        row = await cur.fetchone()
    return None if row is None else str(row[0])
