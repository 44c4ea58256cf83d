"""HTTP endpoints of device groups: listing with member counts, describing and deleting."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import ADMIN, principal_of
from api.devices.schemas import GROUP_DESCRIPTION, GROUP_PATTERN
from api.groups.schemas import Group, GroupPage, GroupPut
from api.groups.services import (
    GROUPS_PAGE_DEFAULT,
    GROUPS_PAGE_MAX,
    HasMembers,
    delete_group,
    describe_group,
    list_groups,
    read_group,
)
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found

# Groups named by devices (`fleet devices add --group`) may hold any text; the API writes only names of
# GROUP_PATTERN, but reads every name up to this length.
GROUP_NAME_MAX_CHARS: Final = 128


def _checked_name(name: str) -> str:
    if not 1 <= len(name) <= GROUP_NAME_MAX_CHARS:
        raise bad_request(f"a group name has 1 to {GROUP_NAME_MAX_CHARS} characters")
    return name


class GroupController(Controller):
    """`/groups`: every group named by a device or described here, with its device and online counts."""

    path = "/groups"
    tags = ("groups",)

    @get("/", summary="List groups")
    async def page(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        limit: Annotated[
            int, QueryParameter(ge=1, le=GROUPS_PAGE_MAX, description="rows per page")
        ] = GROUPS_PAGE_DEFAULT,
        cursor: Annotated[
            str | None,
            QueryParameter(max_length=GROUP_NAME_MAX_CHARS, description="`next_cursor` of the previous page"),
        ] = None,
    ) -> GroupPage:
        """Groups in name order with their counts (for a group-limited API key: its own group only)."""
        return await list_groups(pool, limit=limit, after=cursor, visible_group=principal_of(request).group)

    @get("/{name:str}", summary="A group")
    async def details(self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], name: FromPath[str]) -> Group:
        """The group's description and counts; 404 when no device names it and it is not described."""
        missing = not_found(f"no group {_checked_name(name)!r}")
        visible = principal_of(request).group
        if visible is not None and visible != name:
            raise missing
        group = await read_group(pool, name)
        if group is None:
            raise missing
        return group

    @put(
        "/{name:str}",
        summary="Create or describe a group",
        opt=ADMIN,
        responses={HTTP_201_CREATED: ResponseSpec(data_container=Group, description="The group was created")},
    )
    async def describe(
        self, pool: NamedDependency[Pool], name: FromPath[str], data: JSONBody[GroupPut]
    ) -> Response[Group]:
        """Create the group (201) or replace its description (200). Devices join with PATCH /devices/{id}."""
        if not re.fullmatch(GROUP_PATTERN, name):
            raise bad_request(f"group name {name!r}: expected {GROUP_DESCRIPTION}")
        created = await describe_group(pool, name, data.description)
        group = await read_group(pool, name)
        if group is None:
            raise not_found(f"group {name!r} was deleted meanwhile")
        return Response(group, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/{name:str}", summary="Delete a group", status_code=HTTP_204_NO_CONTENT, opt=ADMIN, raises=[ConflictException]
    )
    async def remove(self, pool: NamedDependency[Pool], name: FromPath[str]) -> None:
        """Delete the group's description; 409 while devices are in it (move them first), 404 if not described."""
        deleted = await delete_group(pool, _checked_name(name))
        if isinstance(deleted, HasMembers):
            raise conflict(f"group {name!r} has {deleted.devices} devices; move them to another group first")
        if not deleted:
            raise not_found(f"no described group {name!r}")
