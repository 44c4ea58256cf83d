"""The fault suite's TCP proxy against a real echo server on loopback: forward, cut, refuse, blackhole, delay."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from stack.netproxy import LOOPBACK, Mode, ProxyThread, TcpProxy

TIMEOUT_S = 5.0


@dataclass
class EchoServer:
    """Echoes every byte back; counts the connections it accepted and how each ended."""

    port: int = 0
    accepted: int = 0
    endings: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
            self.endings.append("eof")
        except ConnectionResetError:
            self.endings.append("reset")
        finally:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    listener = await asyncio.start_server(server.handle, LOOPBACK, 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(LOOPBACK, echo.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), TIMEOUT_S)


async def eventually(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {TIMEOUT_S} s")
        await asyncio.sleep(0.01)


async def test_netproxy_forwards_both_ways_in_order(proxy: TcpProxy, echo: EchoServer) -> None:
    reader, writer = await connect(proxy.port)
    payload = bytes(range(256)) * 1000  # larger than one read: several chunks, order must hold
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT_S) == payload
    assert (echo.accepted, proxy.connections) == (1, 1)
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)
    writer.close()
    await eventually(lambda: proxy.connections == 0, "the link closed after the client left")
    await eventually(lambda: echo.endings == ["eof"], "the server saw a clean end")


async def test_netproxy_cut_resets_every_open_connection_on_both_sides(proxy: TcpProxy, echo: EchoServer) -> None:
    links = [await connect(proxy.port) for _ in range(3)]
    for reader, writer in links:
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT_S) == b"ping"
    assert await proxy.cut() == 3
    for reader, _ in links:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), TIMEOUT_S)
    await eventually(lambda: len(echo.endings) == 3, "the server saw every link end")
    assert echo.endings == ["reset"] * 3
    assert proxy.connections == 0
    # New connections are forwarded as before.
    reader, writer = await connect(proxy.port)
    writer.write(b"again")
    assert await asyncio.wait_for(reader.readexactly(5), TIMEOUT_S) == b"again"
    writer.close()


async def test_netproxy_cut_without_reset_closes_cleanly(proxy: TcpProxy) -> None:
    reader, writer = await connect(proxy.port)
    writer.write(b"x")
    await asyncio.wait_for(reader.readexactly(1), TIMEOUT_S)
    assert await proxy.cut(reset=False) == 1
    assert await asyncio.wait_for(reader.read(1), TIMEOUT_S) == b""  # EOF, not an error
    writer.close()


async def test_netproxy_refuses_new_connections_until_forwarding_again_on_the_same_port(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    port = proxy.port
    reader, writer = await connect(port)
    await proxy.set_mode(Mode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        await connect(port)
    writer.write(b"open")  # what was open stays open
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT_S) == b"open"
    await proxy.set_mode(Mode.FORWARD)
    assert proxy.port == port
    reader2, writer2 = await connect(port)
    writer2.write(b"back")
    assert await asyncio.wait_for(reader2.readexactly(4), TIMEOUT_S) == b"back"
    assert echo.accepted == 2
    for w in (writer, writer2):
        w.close()


async def test_netproxy_blackhole_accepts_but_nothing_reaches_the_server(proxy: TcpProxy, echo: EchoServer) -> None:
    await proxy.set_mode(Mode.BLACKHOLE)
    reader, writer = await connect(proxy.port)  # the TCP handshake succeeds
    writer.write(b"hello?")
    await writer.drain()
    await eventually(lambda: proxy.stats.blackholed == 1, "the connection was taken into the blackhole")
    assert echo.accepted == 0
    assert proxy.connections == 1
    assert await proxy.cut() == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), TIMEOUT_S)
    assert echo.accepted == 0


async def test_netproxy_latency_delays_each_direction(proxy: TcpProxy) -> None:
    proxy.latency_s = 0.2
    reader, writer = await connect(proxy.port)
    started = time.monotonic()
    for n in range(3):
        writer.write(b"%d" % n)
    assert await asyncio.wait_for(reader.readexactly(3), TIMEOUT_S) == b"012"
    # A lower bound only: the proxy added its delay once up and once down. (No upper bound: the
    # machine is shared, and slowness is not what is tested.)
    assert time.monotonic() - started >= 0.4
    writer.close()


async def test_netproxy_throttle_paces_a_burst_to_its_rate_and_spreads_it_out(proxy: TcpProxy) -> None:
    proxy.rate_bytes_s = 20_000
    reader, writer = await connect(proxy.port)
    burst = bytes(range(256)) * 40  # 10 240 bytes at once
    started = time.monotonic()
    writer.write(burst)
    arrivals: list[tuple[float, int]] = []
    got = b""
    while len(got) < len(burst):
        chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT_S)
        got += chunk
        arrivals.append((time.monotonic() - started, len(got)))
    writer.close()

    assert got == burst  # intact and in order
    # Up and down each at 20 kB/s, pipelined: the burst takes at least its size over the rate (a lower
    # bound only, as the machine is shared). Spread out: half of it had arrived well before the end.
    assert arrivals[-1][0] >= len(burst) / 20_000 * 0.95
    half_at = next(t for t, n in arrivals if n >= len(burst) // 2)
    assert half_at <= arrivals[-1][0] * 0.75
    assert len(arrivals) >= 5


async def test_netproxy_throttle_follows_a_rate_change_and_can_be_lifted(proxy: TcpProxy) -> None:
    proxy.rate_bytes_s = 5_000
    reader, writer = await connect(proxy.port)
    writer.write(b"x" * 500)
    assert await asyncio.wait_for(reader.readexactly(500), TIMEOUT_S) == b"x" * 500

    proxy.rate_bytes_s = None
    started = time.monotonic()
    writer.write(b"y" * 100_000)
    assert await asyncio.wait_for(reader.readexactly(100_000), TIMEOUT_S) == b"y" * 100_000
    # Unthrottled, 100 kB goes far faster than the 20 s that 5 kB/s would take.
    assert time.monotonic() - started < 10
    writer.close()


async def test_netproxy_unreachable_upstream_resets_the_client() -> None:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        dead_port = probe.getsockname()[1]  # bound, never listening: connections are refused
        proxy = TcpProxy(LOOPBACK, dead_port)
        await proxy.start()
        try:
            reader, writer = await connect(proxy.port)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), TIMEOUT_S)
            writer.close()
        finally:
            await proxy.close()


def blocking_client(proxy: ProxyThread) -> None:
    """What a threaded client (paho) sees, driving the proxy from its own thread."""
    with socket.create_connection((LOOPBACK, proxy.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"sync")
        assert sock.recv(4) == b"sync"
        assert proxy.connections() == 1
        assert proxy.cut() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    proxy.set_mode(Mode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, proxy.port), timeout=TIMEOUT_S)


async def test_netproxy_thread_serves_blocking_callers(echo: EchoServer) -> None:
    with ProxyThread(LOOPBACK, echo.port) as proxy:
        # In a worker thread: the echo server lives in this test's event loop, which must keep running.
        await asyncio.to_thread(blocking_client, proxy)
    assert echo.accepted == 1
