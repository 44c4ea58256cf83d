"""A TCP proxy between an MQTT client and the broker that reads what passes: which PUBLISH the broker sent
(packet id -> topic) and every PUBACK the client answered, with its reason code and reason string.

Only the bridge's side of the conversation shows the bridge's PUBACK: the broker keeps it to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

PUBLISH: Final = 3
PUBACK: Final = 4
REASON_STRING: Final = 0x1F


@dataclass(frozen=True, slots=True)
class Puback:
    """A PUBACK the client sent, and the topic of the PUBLISH it answers."""

    topic: str
    code: int
    reason: str | None


def _varint(data: bytes, at: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    while at < len(data):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
    return None


def _packets(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Take every whole packet (type, flags, body) off the front of `buffer`."""
    out = []
    while len(buffer) >= 2:
        length = _varint(bytes(buffer), 1)
        if length is None or len(buffer) < length[1] + length[0]:
            break
        size, start = length
        out.append((buffer[0] >> 4, buffer[0] & 0x0F, bytes(buffer[start : start + size])))
        del buffer[: start + size]
    return out


def _reason_string(properties: bytes) -> str | None:
    # Only the Reason String property is looked for; a PUBACK from the bridge carries nothing else.
    if properties[:1] == bytes([REASON_STRING]):
        size = int.from_bytes(properties[1:3], "big")
        return properties[3 : 3 + size].decode("utf-8")
    return None


@dataclass
class MqttTap:
    """Listens on a free port and forwards to `upstream`; collects the client's PUBACKs in `pubacks`."""

    upstream_host: str
    upstream_port: int
    pubacks: list[Puback] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _topics: dict[int, str] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        """Start listening; the port to give the client."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and end every link."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_for(self, topic: str, timeout_s: float = 20) -> Puback:
        """The client's PUBACK for a message on `topic`, once it has passed."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = [p for p in self.pubacks if p.topic == topic]
                if found:
                    return found[0]
                self.changed.clear()
                await self.changed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, from_client=True)),
            asyncio.create_task(self._pump(up_reader, writer, from_client=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                buffer += chunk
                for kind, flags, body in _packets(buffer):
                    self._read(kind, flags, body, from_client=from_client)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _read(self, kind: int, flags: int, body: bytes, *, from_client: bool) -> None:
        if not from_client and kind == PUBLISH and (flags >> 1) & 3:
            size = int.from_bytes(body[:2], "big")
            self._topics[int.from_bytes(body[2 + size : 4 + size], "big")] = body[2 : 2 + size].decode()
        elif from_client and kind == PUBACK:
            mid = int.from_bytes(body[:2], "big")
            code = body[2] if len(body) > 2 else 0
            reason = None
            if len(body) > 3:
                length = _varint(body, 3)
                if length is not None:
                    reason = _reason_string(body[length[1] : length[1] + length[0]])
            self.pubacks.append(Puback(self._topics.pop(mid, "?"), code, reason))
            self.changed.set()
