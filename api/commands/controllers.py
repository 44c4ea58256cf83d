"""HTTP endpoints of commands: sent and cancelled by operators and admins, read by every role that may see
the device (docs/commands.md)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import OPERATOR, may_see_device, principal_of
from api.commands.schemas import ArgumentInfo, Command, CommandInfo, CommandPage, CommandPost
from api.commands.services import (
    COMMANDS_PAGE_DEFAULT,
    COMMANDS_PAGE_MAX,
    cancel_command,
    decode_cursor,
    list_commands,
    read_command,
)
from api.commands.submit import CommandsBackend, submit_command
from api.pool import Pool
from api.problems import (
    ConflictException,
    UnprocessableException,
    bad_request,
    conflict,
    not_found,
)
from models.commands import CATALOGUE, CommandState, is_command_id

IDEMPOTENCY_KEY_MAX_CHARS: Final = 200


class DeviceCommandController(Controller):
    """`/devices/{id}/commands`: send a command to a device, and list what it was sent."""

    path = "/devices/{device_id:str}/commands"
    tags = ("commands",)

    @post(
        "/",
        summary="Send a command to a device",
        status_code=HTTP_201_CREATED,
        opt=OPERATOR,
        raises=[ConflictException, UnprocessableException],
    )
    async def send(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        commands: NamedDependency[CommandsBackend],
        device_id: FromPath[str],
        data: JSONBody[CommandPost],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                min_length=1,
                max_length=IDEMPOTENCY_KEY_MAX_CHARS,
                description="the same key (same caller, same device, same request) returns the same command",
            ),
        ] = None,
    ) -> Response[Command]:
        """Store the command and hand it to the broker at once if the device is online; else it waits,
        queued, until the device comes online or the command expires.

        Dangerous commands (immobilise, unlock) are refused with 409 and the device's presence unless the
        device is online now, and are never sent later. A disabled device is refused (409). 201 for a new
        command; 200 with `Idempotent-Replayed: true` for a replay of an idempotency key; 422 when the key
        was used for a different request.
        """
        return await submit_command(
            pool, commands, principal_of(request), device_id, data, idempotency_key=idempotency_key
        )

    @get("/", summary="A device's commands")
    async def page(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
        command_state: Annotated[
            CommandState | None, QueryParameter(name="state", description="only commands in this state")
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=COMMANDS_PAGE_MAX, description="commands per page")
        ] = COMMANDS_PAGE_DEFAULT,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="`next_cursor` of the previous page")
        ] = None,
    ) -> CommandPage:
        """The commands sent to the device, newest first (without their transitions: read one for those)."""
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if after is None:
                raise bad_request(f"cursor {cursor!r} is not a `next_cursor` of this API")
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        return await list_commands(pool, device_id, state=command_state, limit=limit, after=after)


class CommandController(Controller):
    """`/commands/{id}`: one command with its transitions; cancel it while it is queued."""

    path = "/commands"
    tags = ("commands",)

    @get("/{command_id:str}", summary="A command")
    async def details(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], command_id: FromPath[str]
    ) -> Command:
        """The command with every transition it went through, in order."""
        return await _command_or_404(pool, command_id, principal_of(request).group)

    @post(
        "/{command_id:str}/cancel",
        summary="Cancel a queued command",
        status_code=HTTP_200_OK,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def cancel(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], command_id: FromPath[str]
    ) -> Command:
        """Cancel a command not yet handed to the broker; 409 once it was sent (MQTT has no recall: the
        device may be obeying it; its expiry still bounds when it can arrive)."""
        principal = principal_of(request)
        await _command_or_404(pool, command_id, principal.group)
        done = await cancel_command(pool, command_id, principal.name)
        if done is False:
            raise not_found(f"no command {command_id}")
        if isinstance(done, str):
            raise conflict(f"command {command_id} is {done}: only a queued command can be cancelled")
        return await _command_or_404(pool, command_id, principal.group)


@get("/command-catalogue", tags=["commands"], summary="The commands devices obey")
async def command_catalogue() -> list[CommandInfo]:
    """Every command, the device kinds that obey it (null: every kind), its arguments, and whether it is
    dangerous."""
    return [
        CommandInfo(
            name=spec.name,
            description=spec.description,
            dangerous=spec.dangerous,
            kinds=None if spec.kinds is None else sorted(spec.kinds),
            args=[
                ArgumentInfo(
                    name=a.name, type=a.type.__name__, required=a.required, minimum=a.minimum, maximum=a.maximum
                )
                for a in spec.args
            ],
        )
        for spec in CATALOGUE.values()
        if not spec.internal
    ]


async def _command_or_404(pool: Pool, command_id: str, visible_group: str | None) -> Command:
    if not is_command_id(command_id):
        raise not_found(f"no command {command_id!r}")
    command = await read_command(pool, command_id, visible_group)
    if command is None:
        raise not_found(f"no command {command_id}")
    return command
