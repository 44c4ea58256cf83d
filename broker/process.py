"""Start a real Mosquitto from the rendered config, for tests and the local stack.

Readiness is a real MQTT handshake (CONNECT answered by CONNACK), not an open port: Mosquitto
listens a moment before it serves, and only a CONNACK proves it parsed its config and runs.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Final

from broker.certs import TlsFiles
from broker.config import production_config_text, render_config
from stack.process import (
    LOOPBACK,
    LaunchSpec,
    ServerProcess,
    ServerStartError,
    check_enterable,
    claim_port,
    give_dir_to,
    running_as_root,
)

MOSQUITTO_USER: Final = "mosquitto"
MOSQUITTO_FALLBACK_BINARY: Final = Path("/usr/sbin/mosquitto")
PROBE_TIMEOUT_S: Final = 1.0
# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keepalive 60 s, empty client id
# (the broker assigns one). The oldest protocol every broker speaks keeps the probe trivial.
_PROBE_CONNECT: Final = bytes([0x10, 12, 0, 4, *b"MQTT", 4, 0x02, 0, 60, 0, 0])
_DISCONNECT: Final = bytes([0xE0, 0])
_CONNACK_TYPE: Final = 0x20
_VERSION_RE: Final = re.compile(r"mosquitto version ([0-9]+(?:\.[0-9]+)*)")


def mosquitto_binary(binary: Path | None = None) -> Path:
    """`binary`, else `mosquitto` from PATH, else Debian's /usr/sbin path; `ServerStartError` if none exists."""
    found = binary or (Path(which) if (which := shutil.which("mosquitto")) else MOSQUITTO_FALLBACK_BINARY)
    if not found.exists():
        raise ServerStartError(f"mosquitto not found at {found}: install the mosquitto package")
    return found


def mosquitto_version(binary: Path | None = None) -> tuple[int, ...]:
    """The version of the Mosquitto `binary` (found as `mosquitto_binary` does), e.g. (2, 0, 21).

    From the first line of `mosquitto -h` ("mosquitto version 2.0.21"), which every 2.x prints; a
    `ServerStartError` when the binary is missing or prints no version.
    """
    found = mosquitto_binary(binary)
    # `-h` exits 3 after printing its help: only the text matters.
    result = subprocess.run([str(found), "-h"], capture_output=True, text=True, check=False, timeout=10)
    match = _VERSION_RE.search(result.stdout + result.stderr)
    if match is None:
        raise ServerStartError(f"{found} printed no version on -h: is it Mosquitto?")
    return tuple(int(part) for part in match[1].split("."))


def mqtt_answers(port: int, host: str = LOOPBACK, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when an MQTT broker on `host`:`port` answers CONNECT with a CONNACK.

    Any CONNACK counts, "not authorised" included: it proves the broker is up, which is all a
    readiness probe asks; the probe carries no credentials.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_PROBE_CONNECT)
            reply = _receive_exactly(sock, 4)
            if reply is None or reply[0] != _CONNACK_TYPE or reply[1] != 2:
                return False
            sock.sendall(_DISCONNECT)  # so the broker logs a clean disconnect, not a dropped client
            return True
    except OSError:
        return False


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def start_mosquitto(
    data_dir: Path,
    port: int = 0,
    *,
    anonymous: bool = True,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    cert_port: int | None = None,
    binary: Path | None = None,
) -> ServerProcess:
    """Start Mosquitto on 127.0.0.1:`port` (0: a free port) with `data_dir` for its state; return once it answers.

    The config is rendered from the production mosquitto.conf into `data_dir`. Started as root,
    Mosquitto drops to the `mosquitto` user: `data_dir` is handed to it, and the password and ACL
    files must be readable by it. The defaults are development mode: anonymous, loopback only.

    With `tls` it also serves MQTT over TLS on 127.0.0.1:`tls_port`, with the same accounts; the port
    must be given (e.g. `stack.process.free_port()`) so the caller knows where it is, and the key must be
    readable by the `mosquitto` user (`broker.certs.init_certs` makes it so).

    With `cert_port` as well (and `tls.crl_file`), devices log in with their client certificate alone on
    127.0.0.1:`cert_port`, the certificate's CN being their user name.
    """
    if (tls is None) != (tls_port is None) or tls_port == 0 or cert_port == 0:
        raise ServerStartError("mosquitto: a TLS listener needs its files (tls) and a fixed port (tls_port)")
    if cert_port is not None and tls_port is None:
        raise ServerStartError("mosquitto: the certificate listener (cert_port) needs the TLS files and tls_port")
    port = claim_port(port, "mosquitto")
    if tls_port is not None:
        tls_port = claim_port(tls_port, "mosquitto (TLS)")
    if cert_port is not None:
        cert_port = claim_port(cert_port, "mosquitto (certificates)")
    data_dir = data_dir.absolute()
    give_dir_to(data_dir, MOSQUITTO_USER)
    if running_as_root():
        check_enterable(data_dir, MOSQUITTO_USER)
    config_path = data_dir / "mosquitto.conf"
    config_path.write_text(
        render_config(
            production_config_text(),
            port=port,
            data_dir=data_dir,
            anonymous=anonymous,
            password_file=password_file,
            acl_file=acl_file,
            tls=tls,
            tls_port=tls_port,
            cert_port=cert_port,
        )
    )
    return ServerProcess.start(
        "mosquitto",
        url=f"mqtt://{LOOPBACK}:{port}",
        port=port,
        data_dir=data_dir,
        # The config logs to stderr, which the launcher sends here: one file that also holds the
        # errors Mosquitto prints before it has read its config.
        log_path=data_dir / "mosquitto.log",
        spec=LaunchSpec(argv=(str(mosquitto_binary(binary)), "-c", str(config_path)), ready=lambda: mqtt_answers(port)),
    )
