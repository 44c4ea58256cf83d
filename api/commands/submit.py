"""Making a command: the checks every route that makes one shares (the generic command route, firmware
updates), the idempotency key, storing it, and handing it to the broker at once when its device is
online (docs/commands.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from litestar import Response
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import may_see_device
from api.commands.dispatch import Dispatcher
from api.commands.schemas import Command, CommandPost
from api.commands.services import (
    DeviceFacts,
    KeyReused,
    NewCommand,
    Replayed,
    device_facts,
    insert_command,
    read_command,
    replay,
    request_digest,
)
from api.mqtt import MqttUnavailableError
from api.pool import Pool
from api.principal import Principal
from api.problems import bad_request, conflict, not_found, unavailable, unprocessable
from config import CommandSettings
from models.commands import check_command, resolve_expiry

STATE_KEY: Final = "commands"
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


async def submit_command(
    pool: Pool,
    commands: CommandsBackend,
    principal: Principal,
    device_id: str,
    data: CommandPost,
    *,
    idempotency_key: str | None,
    internal: bool = False,
) -> Response[Command]:
    """Store the command and hand it to the broker at once if the device is online; 201 with it, or 200
    with the command an earlier request with the same idempotency key made; a problem otherwise."""
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
        internal=internal,
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


def _checked(
    device_id: str,
    facts: DeviceFacts,
    *,
    data: CommandPost,
    commands: CommandsBackend,
    who: str,
    idempotency_key: str | None,
    digest: bytes,
    internal: bool,
) -> NewCommand:
    """The command to store, or the problem that refuses it: 400 for what was asked, 409 for the device's
    state, 503 for a dangerous command while the broker is away."""
    spec = check_command(facts.kind, data.name, data.args, internal=internal)
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


def _key_reused(key: str, command_id: str) -> Exception:
    return unprocessable(
        f"Idempotency-Key {key!r} was used for a different request (command {command_id}): use a new key",
        {"command_id": command_id},
    )
