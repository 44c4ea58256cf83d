"""HTTP endpoints of the device twin: a device's or a group's desired configuration, read and patched.

Reading is for every caller (a group-limited API key sees its group's devices and group only, anything
else as if it did not exist). Changing is for operators and admins: an RFC 7396 JSON Merge Patch
(`application/merge-patch+json`) with `If-Match` naming the version it was made against (the `ETag` of
the last read; `*` for any). Without `If-Match` the answer is 428: two operators editing one device must
not silently overwrite each other. A device's change is published (retained, on `config`) right after it
is committed; a group's reaches its devices through the delivery sweep it wakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, patch
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, HeaderParameter
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_412_PRECONDITION_FAILED,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_428_PRECONDITION_REQUIRED,
)

from api.auth import OPERATOR, may_see_device, principal_of
from api.groups.controllers import GROUP_NAME_MAX_CHARS
from api.groups.services import read_group
from api.ingest.body import BodyRefusal, read_limited
from api.pool import Pool
from api.problems import (
    bad_request,
    conflict,
    not_found,
    payload_too_large,
    precondition_failed,
    precondition_required,
    unsupported_media_type,
)
from api.twin.delivery import TwinDelivery
from api.twin.schemas import DeviceTwin, GroupTwin
from api.twin.services import (
    Disabled,
    Invalid,
    Stale,
    Unknown,
    patch_device_twin,
    patch_group_twin,
    read_device_twin,
    read_group_twin,
)
from models.topics import DEVICE_ID_PATTERN, is_device_id
from models.twin import DESIRED_MAX_BYTES

MERGE_PATCH: Final = "application/merge-patch+json"
# A patch may delete every key of a full document with nulls: room for that, and no more.
PATCH_MAX_BYTES: Final = 4 * DESIRED_MAX_BYTES

IfMatch = Annotated[
    str | None,
    HeaderParameter(name="If-Match", description='the ETag of the version the change is made against (`"7"`), or `*`'),
]

_PATCH_RESPONSES: Final = {
    HTTP_412_PRECONDITION_FAILED: ResponseSpec(None, description="If-Match names a version that is not current"),
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: ResponseSpec(None, description=f"the patch is over {PATCH_MAX_BYTES} bytes"),
    HTTP_415_UNSUPPORTED_MEDIA_TYPE: ResponseSpec(None, description=f"the body is not {MERGE_PATCH}"),
    HTTP_428_PRECONDITION_REQUIRED: ResponseSpec(None, description="If-Match is missing"),
}


@dataclass
class MergePatchOperation(Operation):
    """The body is read by the handler itself (a JSON Merge Patch): documented by hand."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="An RFC 7396 JSON Merge Patch: an object; null deletes a key, objects merge. Known keys: "
            "report_interval_s (integer seconds, 1…86400), thresholds (metric name -> number), "
            "firmware_channel (1…32 of A-Z a-z 0-9 _ . -); any other key is passed to the device as it is.",
            content={MERGE_PATCH: OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT))},
        )


_ETAG_HEADER: Final = [
    ResponseHeader(
        name="ETag",
        description='the version, as `"<version>"`: send it as If-Match with a change',
        documentation_only=True,
    )
]


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _checked_id(device_id: str) -> str:
    if not is_device_id(device_id):
        raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    return device_id


async def _merge_patch(request: Request[Any, Any, Any], if_match: str | None) -> tuple[dict[str, Any], str]:
    """The request's merge patch (an object) and its If-Match; a problem for anything else."""
    media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != MERGE_PATCH:
        raise unsupported_media_type(f"send the change as {MERGE_PATCH} (RFC 7396), not {media or 'no type'}")
    body = await read_limited(request.stream(), PATCH_MAX_BYTES)
    if isinstance(body, BodyRefusal):
        raise payload_too_large(f"a patch has at most {PATCH_MAX_BYTES} bytes")
    try:
        patch_document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    if not isinstance(patch_document, dict):
        raise bad_request("a twin patch must be a JSON object (RFC 7396: null deletes a key, objects merge)")
    if if_match is None or not if_match.strip():
        raise precondition_required('send If-Match with the ETag of the twin you read (or "*" for any version)')
    return patch_document, if_match


@get("/devices/{device_id:str}/twin", summary="A device's twin", tags=["twin"], response_headers=_ETAG_HEADER)
async def device_twin(
    request: Request[Any, Any, Any], pool: NamedDependency[Pool], device_id: FromPath[str]
) -> Response[DeviceTwin]:
    """Desired (effective: the group's defaults with the device's own keys over them; and its own keys),
    reported, the keys that differ, and the versions; the ETag is the effective version."""
    missing = not_found(f"no device {_checked_id(device_id)!r}")
    if not await may_see_device(principal_of(request), pool, device_id):
        raise missing
    twin = await read_device_twin(pool, device_id)
    if twin is None:
        raise missing
    return Response(twin, headers=_etag(twin.version))


@patch(
    "/devices/{device_id:str}/twin",
    summary="Change a device's desired configuration",
    tags=["twin"],
    opt=OPERATOR,
    response_headers=_ETAG_HEADER,
    operation_class=MergePatchOperation,
    request_max_body_size=None,
    responses={HTTP_409_CONFLICT: ResponseSpec(None, description="the device is disabled"), **_PATCH_RESPONSES},
)
async def change_device_twin(
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    twin_delivery: NamedDependency[TwinDelivery],
    device_id: FromPath[str],
    if_match: IfMatch = None,
) -> Response[DeviceTwin]:
    """Merge the patch into the device's own keys; then publish the effective document (retained). If the
    broker is away, the change is kept and published when it is back (`published_version` says which)."""
    _checked_id(device_id)
    patch_document, condition = await _merge_patch(request, if_match)
    changed = await patch_device_twin(
        pool, device_id, patch_document, if_match=condition, by=principal_of(request).name
    )
    if isinstance(changed, Unknown):
        raise not_found(f"no device {device_id!r}")
    if isinstance(changed, Disabled):
        raise conflict(f"device {device_id!r} is disabled; enable it before changing its configuration")
    if isinstance(changed, Stale):
        raise precondition_failed(f"the twin is at version {changed.current}; read it again and re-apply the change")
    if isinstance(changed, Invalid):
        raise bad_request(f"the desired document would be invalid: {changed.reason}")
    if await twin_delivery.deliver(pool, device_id):
        published = await read_device_twin(pool, device_id)
        changed = published or changed
    return Response(changed, headers=_etag(changed.version))


async def _visible_group(request: Request[Any, Any, Any], pool: Pool, name: str) -> str:
    missing = not_found(f"no group {name!r}")
    if not 1 <= len(name) <= GROUP_NAME_MAX_CHARS:
        raise bad_request(f"a group name has 1 to {GROUP_NAME_MAX_CHARS} characters")
    visible = principal_of(request).group
    if (visible is not None and visible != name) or await read_group(pool, name) is None:
        raise missing
    return name


@get("/groups/{name:str}/twin", summary="A group's twin defaults", tags=["twin"], response_headers=_ETAG_HEADER)
async def group_twin(
    request: Request[Any, Any, Any], pool: NamedDependency[Pool], name: FromPath[str]
) -> Response[GroupTwin]:
    """The defaults every device of the group inherits (its own keys override them); ETag: their version."""
    twin = await read_group_twin(pool, await _visible_group(request, pool, name))
    return Response(twin, headers=_etag(twin.version))


@patch(
    "/groups/{name:str}/twin",
    summary="Change a group's twin defaults",
    tags=["twin"],
    opt=OPERATOR,
    response_headers=_ETAG_HEADER,
    operation_class=MergePatchOperation,
    request_max_body_size=None,
    responses=_PATCH_RESPONSES,
)
async def change_group_twin(
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    twin_delivery: NamedDependency[TwinDelivery],
    name: FromPath[str],
    if_match: IfMatch = None,
) -> Response[GroupTwin]:
    """Merge the patch into the group's defaults; every device of the group gets a new version, published
    (retained) by the delivery sweep this wakes."""
    await _visible_group(request, pool, name)
    patch_document, condition = await _merge_patch(request, if_match)
    changed = await patch_group_twin(pool, name, patch_document, if_match=condition, by=principal_of(request).name)
    if isinstance(changed, Stale):
        raise precondition_failed(f"the defaults are at version {changed.current}; read them again and re-apply")
    if isinstance(changed, Invalid):
        raise bad_request(f"the defaults would be invalid: {changed.reason}")
    twin_delivery.wake()
    return Response(changed, headers=_etag(changed.version))
