"""A small TCP proxy of the project's own, for fault tests: forward, cut, refuse, blackhole, delay.

No network-fault tool is installable on the development machines (no `tc`/netem rights, no toxiproxy),
so the fault suite puts this between a client and a server and breaks the link on purpose:

* **forward** — bytes both ways, each chunk held back `latency_s` (one way) if set, order kept; with
  `rate_bytes_s`, each direction is paced to that many bytes per second (a thin link: a cellular or
  satellite site), in slices of `PACE_SLICE_S` worth, so a burst arrives spread out as over a slow link;
* **cut** — every current connection ends at once: with a reset (SO_LINGER 0, so the peer sees RST, as
  after a dead cellular link's NAT entry expires) or with a plain close;
* **refuse** — the listening socket is closed, so new connections get ECONNREFUSED, until `forward`;
* **blackhole** — new connections are accepted and then ignored: nothing reaches the server, nothing
  comes back, as on a link that silently drops packets; the client finds out only by its own timeout.

`TcpProxy` is asyncio and runs in the caller's loop. `ProxyThread` runs one in a loop of its own on a
daemon thread, for synchronous callers (the fault harness drives paho devices and child processes from
plain threads). The proxy never parses what it carries, so it serves MQTT, Redis or PostgreSQL alike;
to cut one client's link and not another's, give that client a proxy of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
READ_CHUNK_BYTES: Final = 64 * 1024
CONNECT_TIMEOUT_S: Final = 5.0
CALL_TIMEOUT_S: Final = 10.0
PACE_SLICE_S: Final = 0.01  # a throttled link delivers in slices of this many seconds' worth of bytes
# SO_LINGER on with a zero timeout: close() discards unsent data and sends RST instead of FIN.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)

T = TypeVar("T")


class Mode(enum.Enum):
    """What the proxy does with new connections (current ones are only ever ended by `cut`)."""

    FORWARD = "forward"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


@dataclass(slots=True)
class ProxyStats:
    """Counters since start: connections accepted, refused while blackholed, cut, and bytes carried."""

    accepted: int = 0
    blackholed: int = 0
    cut: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client


@dataclass(slots=True, eq=False)  # identity: links live in a set
class _Link:
    """One client connection and, once connected, its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    """Listens on `listen_host:listen_port` (0: a free port) and forwards to `upstream_host:upstream_port`."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = LOOPBACK,
        listen_port: int = 0,
        latency_s: float = 0.0,
        rate_bytes_s: float | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.latency_s = latency_s
        # Bytes per second in each direction (None: as fast as loopback); read per slice, so a change
        # applies at once to what is queued too.
        self.rate_bytes_s = rate_bytes_s
        self.stats = ProxyStats()
        self._mode = Mode.FORWARD
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()  # blackholed connections

    @property
    def mode(self) -> Mode:
        """What happens to new connections now."""
        return self._mode

    @property
    def connections(self) -> int:
        """Client connections open now (forwarded or blackholed)."""
        return len(self._links) + len(self._held)

    async def start(self) -> None:
        """Start listening; afterwards `port` is the port actually bound."""
        await self._listen()

    async def close(self) -> None:
        """Stop listening and end every connection (with a plain close)."""
        await self._stop_listening()
        await self.cut(reset=False)

    async def set_mode(self, mode: Mode) -> None:
        """Change what happens to new connections; connections already open are left as they are."""
        if mode is self._mode:
            return
        self._mode = mode
        if mode is Mode.REFUSE:
            await self._stop_listening()
        elif self._server is None:
            await self._listen()
        log.info("proxy :%d -> %s:%d now %s new connections", self.port, *self.upstream, mode.value)

    async def cut(self, *, reset: bool = True) -> int:
        """End every open connection now, both sides; with `reset`, by RST. Returns how many were cut."""
        links, self._links = list(self._links), set()
        held, self._held = list(self._held), set()
        for link in links:
            for task in link.tasks:
                task.cancel()
            _end(link.client, reset=reset)
            if link.upstream is not None:
                _end(link.upstream, reset=reset)
        for writer in held:
            _end(writer, reset=reset)
        for link in links:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        cut = len(links) + len(held)
        self.stats.cut += cut
        if cut:
            log.info("proxy :%d cut %d connections (%s)", self.port, cut, "reset" if reset else "close")
        return cut

    async def _listen(self) -> None:
        # reuse_address: after `refuse`, the same port is taken again although old connections linger in TIME_WAIT.
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.port, reuse_address=True, limit=READ_CHUNK_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Not `wait_closed()`: from Python 3.12 it also waits for every accepted connection to end.

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        finally:
            # Also when cancelled (the proxy closing): the accepted connection never outlives its handler.
            _end(writer, reset=False)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode is Mode.BLACKHOLE:
            self.stats.blackholed += 1
            self._held.add(writer)
            await _discard(reader)
            self._held.discard(writer)
            return
        self.stats.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream, limit=READ_CHUNK_BYTES), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            log.info("proxy :%d cannot reach %s:%d: %s", self.port, *self.upstream, exc)
            self._links.discard(link)
            _end(writer, reset=True)  # as the server would have: the client sees the refusal
            return
        if link not in self._links:  # cut while connecting
            _end(up_writer, reset=True)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, up=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        if link in self._links:
            self._links.discard(link)
            _end(writer, reset=False)
            _end(up_writer, reset=False)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        """Copy one direction until EOF, delaying each chunk by the latency in force when it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while data := await reader.read(READ_CHUNK_BYTES):
                if sender.done():  # the other end is gone
                    break
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                queue.put_nowait((loop.time() + self.latency_s, data))
            queue.put_nowait((0.0, b""))
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass  # the peer went away: the other direction ends too
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            # Half-close is not modelled: one side gone ends the whole link, as MQTT and libpq expect.
            _end(writer, reset=False)

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        free_at = 0.0  # when the throttled link has carried everything written so far
        while True:
            due, data = await queue.get()
            if not data:
                return
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            while data:
                rate = self.rate_bytes_s
                if rate is None:
                    writer.write(data)
                    await writer.drain()
                    break
                size = max(1, int(rate * PACE_SLICE_S))
                piece, data = data[:size], data[size:]
                free_at = max(free_at, loop.time())
                if (wait := free_at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(piece)
                await writer.drain()
                free_at += len(piece) / rate


async def _discard(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(READ_CHUNK_BYTES):
            pass


async def _finish_tasks() -> None:
    """Let closed connections finish and end what still runs (held connections), so that nothing of
    theirs outlives the loop (an unclosed transport found after the loop closed is a warning)."""
    await asyncio.sleep(0)  # the aborted transports' connection_lost callbacks run first
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _end(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close a connection at once; with `reset` the peer gets RST rather than FIN."""
    if writer.is_closing() and not reset:
        return
    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class ProxyThread:
    """A `TcpProxy` in an event loop of its own on a daemon thread, driven by blocking calls.

    Use as a context manager (or `start()`/`close()`); the proxy's methods are mirrored as blocking ones.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, latency_s: float = 0.0, rate_bytes_s: float | None = None
    ) -> None:
        self.proxy = TcpProxy(upstream_host, upstream_port, latency_s=latency_s, rate_bytes_s=rate_bytes_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    def __enter__(self) -> ProxyThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self.proxy.port

    @property
    def stats(self) -> ProxyStats:
        """The proxy's counters (read without locking: each is a plain int)."""
        return self.proxy.stats

    def start(self) -> None:
        """Start the loop thread and the proxy."""
        self._thread.start()
        self._call(self.proxy.start)

    def close(self) -> None:
        """Close the proxy and stop its loop thread."""
        if not self._thread.is_alive():
            return
        self._call(self.proxy.close)
        self._call(_finish_tasks)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        """See `TcpProxy.set_mode`."""
        self._call(lambda: self.proxy.set_mode(mode))

    def cut(self, *, reset: bool = True) -> int:
        """See `TcpProxy.cut`."""
        return self._call(lambda: self.proxy.cut(reset=reset))

    def set_latency(self, latency_s: float) -> None:
        """Delay every chunk read from now on by `latency_s` (one way)."""
        self._loop.call_soon_threadsafe(setattr, self.proxy, "latency_s", latency_s)

    def set_rate(self, rate_bytes_s: float | None) -> None:
        """Pace each direction to `rate_bytes_s` bytes per second from now on (None: unthrottled)."""
        self._loop.call_soon_threadsafe(setattr, self.proxy, "rate_bytes_s", rate_bytes_s)

    def connections(self) -> int:
        """Client connections open now."""
        return self._call(self._connections)

    async def _connections(self) -> int:
        return self.proxy.connections

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(CALL_TIMEOUT_S)
