"""HTTP endpoints of commands: sent and cancelled by operators and admins, read by every role that may see
the device (docs/commands.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import OPERATOR, may_see_device, principal_of
from api.commands.dispatch import Dispatcher
from api.commands.schemas import ArgumentInfo, Command, CommandInfo, CommandPage, CommandPost
from api.commands.services import (
    COMMANDS_PAGE_DEFAULT,
    COMMANDS_PAGE_MAX,
    DeviceFacts,
    KeyReused,
    NewCommand,
    Replayed,
    cancel_command,
    decode_cursor,
    device_facts,
    insert_command,
    list_commands,
    read_command,
    replay,
    request_digest,
)
from api.mqtt import MqttUnavailableError
from api.pool import Pool
from api.problems import (
    ConflictException,
    UnprocessableException,
    bad_request,
    conflict,
    not_found,
    unavailable,
    unprocessable,
)
from config import CommandSettings
from models.commands import CATALOGUE, CommandState, check_command, is_command_id, resolve_expiry

STATE_KEY: Final = "commands"
IDEMPOTENCY_KEY_MAX_CHARS: Final = 200
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_RETRY_AFTER_S: Final = 5


class CommandsBackend:
    """What the command routes share: the settings and, once the app runs, the dispatcher."""

    def __init__(self, settings: CommandSettings) -> None:
        self.settings = settings
        self.dispatcher: Dispatcher | None = None


def provide_commands(state: State) -> CommandsBackend:
    """The commands backend, from `app.state`."""
    backend = state.get(STATE_KEY)
    if not isinstance(backend, CommandsBackend):
        raise TypeError("app.state holds no CommandsBackend: the API's lifespan has not run")
    return backend


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
        principal = principal_of(request)
        if not await may_see_device(principal, pool, device_id):
            raise not_found(f"no device {device_id!r}")
        facts = await device_facts(pool, device_id)
        if facts is None:
            raise not_found(f"no device {device_id!r}")
        digest = request_digest(device_id, data)
        if idempotency_key is not None:
            earlier = await replay(pool, device_id, principal.name, idempotency_key, digest)
            if earlier is not None:
                return _replayed(idempotency_key, earlier)
        new = _checked(
            device_id,
            facts,
            data=data,
            commands=commands,
            who=principal.name,
            idempotency_key=idempotency_key,
            digest=digest,
        )
        command_id = await insert_command(pool, new)
        if command_id is None:  # a concurrent request with the same key won
            assert idempotency_key is not None
            earlier = await replay(pool, device_id, principal.name, idempotency_key, digest)
            if earlier is None:
                raise conflict(f"Idempotency-Key {idempotency_key!r}: the command it names was just deleted")
            return _replayed(idempotency_key, earlier)
        dispatcher = commands.dispatcher
        if dispatcher is not None:
            try:
                await dispatcher.send_now(command_id)
            except MqttUnavailableError as exc:
                if new.dangerous:
                    await dispatcher.fail_unsent(command_id, f"the broker did not take it: {exc}")
                # Anything else stays queued: the dispatcher sends it when the broker is back.
        command = await read_command(pool, command_id, None)
        if command is None:
            raise not_found(f"device {device_id!r} was deleted meanwhile")
        return Response(command, status_code=HTTP_201_CREATED)

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
    ]


def _checked(
    device_id: str,
    facts: DeviceFacts,
    *,
    data: CommandPost,
    commands: CommandsBackend,
    who: str,
    idempotency_key: str | None,
    digest: bytes,
) -> NewCommand:
    """The command to store, or the problem that refuses it: 400 for what was asked, 409 for the device's
    state, 503 for a dangerous command while the broker is away."""
    spec = check_command(facts.kind, data.name, data.args)
    if isinstance(spec, str):
        raise bad_request(spec)
    settings = commands.settings
    expires_at = resolve_expiry(
        datetime.now(UTC),
        expires_at=data.expires_at,
        expires_in_s=data.expires_in_s,
        default_s=settings.default_expiry_s,
        max_s=settings.max_expiry_s,
    )
    if isinstance(expires_at, str):
        raise bad_request(expires_at)
    if facts.disabled:
        raise conflict(f"device {device_id!r} is disabled: it is sent no commands")
    if spec.dangerous and not facts.online:
        raise conflict(
            f"{spec.name!r} is dangerous and device {device_id!r} is not online: it is never queued for later",
            {
                "presence": {
                    "state": facts.presence or "unknown",
                    "source": facts.presence_source,
                    "since": facts.presence_since.isoformat() if facts.presence_since else None,
                }
            },
        )
    dispatcher = commands.dispatcher
    if spec.dangerous and (dispatcher is None or dispatcher.link_down):
        raise unavailable(
            "the API is not connected to the MQTT broker: a dangerous command is not queued", _RETRY_AFTER_S
        )
    return NewCommand(
        device_id=device_id,
        name=spec.name,
        args=data.args,
        dangerous=spec.dangerous,
        expires_at=expires_at,
        created_by=who,
        idempotency_key=idempotency_key,
        request_sha256=digest,
    )


def _replayed(key: str, earlier: Replayed | KeyReused) -> Response[Command]:
    if isinstance(earlier, KeyReused):
        raise _key_reused(key, earlier.command_id)
    return Response(earlier.command, status_code=HTTP_200_OK, headers={REPLAYED_HEADER: "true"})


async def _command_or_404(pool: Pool, command_id: str, visible_group: str | None) -> Command:
    if not is_command_id(command_id):
        raise not_found(f"no command {command_id!r}")
    command = await read_command(pool, command_id, visible_group)
    if command is None:
        raise not_found(f"no command {command_id}")
    return command


def _key_reused(key: str, command_id: str) -> Exception:
    return unprocessable(
        f"Idempotency-Key {key!r} was used for a different request (command {command_id}): use a new key",
        {"command_id": command_id},
    )
