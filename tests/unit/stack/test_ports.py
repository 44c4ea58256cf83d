"""The stack's ports are kept in the state folder: the next start reuses them, and says loudly when it cannot."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from stack.ports import PORTS_FILE, PortBook
from stack.process import LOOPBACK, free_port


def _book(tmp_path: Path, said: list[str]) -> PortBook:
    return PortBook(tmp_path, said.append)


def test_a_port_chosen_for_a_taken_one_is_reused_at_the_next_start(tmp_path: Path) -> None:
    said: list[str] = []
    with socket.socket() as holder:  # the configured port is taken, as a system Mosquitto takes 1883
        holder.bind((LOOPBACK, 0))
        holder.listen()
        configured = holder.getsockname()[1]
        first = _book(tmp_path, said).pick("mqtt", configured, "Devices")
        assert first != configured
        assert f"port {configured} is taken" in said[-1]
        second = _book(tmp_path, said).pick("mqtt", configured, "Devices")
    assert second == first
    assert json.loads((tmp_path / PORTS_FILE).read_text())["mqtt"] == {"configured": configured, "port": first}


def test_any_free_port_is_kept_too(tmp_path: Path) -> None:
    said: list[str] = []
    first = _book(tmp_path, said).pick("api", 0, "API clients")
    assert _book(tmp_path, said).pick("api", 0, "API clients") == first
    assert said == []


def test_a_kept_port_that_is_taken_now_is_replaced_with_a_loud_warning(tmp_path: Path) -> None:
    said: list[str] = []
    kept = _book(tmp_path, said).pick("mqtt", 0, "Devices and integrators")
    with socket.socket() as holder:
        holder.bind((LOOPBACK, kept))
        holder.listen()
        book = _book(tmp_path, said)
        new = book.pick("mqtt", 0, "Devices and integrators")
    assert new != kept
    assert [(c.old, c.new) for c in book.changes] == [(kept, new)]
    assert said[-1].startswith("WARNING: the mqtt port CHANGED")
    assert f"from {kept} to {new}" in said[-1]
    assert f"Devices and integrators must now use port {new}" in said[-1]


def test_a_changed_setting_wins_over_the_kept_port(tmp_path: Path) -> None:
    said: list[str] = []
    _book(tmp_path, said).pick("redis", 0, "Redis clients")
    wanted = free_port()
    assert _book(tmp_path, said).pick("redis", wanted, "Redis clients") == wanted
    assert not any("CHANGED" in line for line in said)
