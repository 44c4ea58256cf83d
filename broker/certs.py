"""A development certificate authority and the broker's and devices' certificates, made with the `openssl` CLI.

For the local stack and the tests only: production certificates come from the operator's own PKI. The CA
is made once and reused, so certificates already handed to devices stay valid; the server certificate
names `localhost` and 127.0.0.1. Private keys are 0600, except the server key, which the `mosquitto`
group may read: Mosquitto started as root drops to that user before it loads its certificates.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

OPENSSL_FALLBACK_BINARY: Final = Path("/usr/bin/openssl")
MOSQUITTO_GROUP: Final = "mosquitto"
CA_VALID_DAYS: Final = 3650
CERT_VALID_DAYS: Final = 825
SERVER_NAMES: Final = "DNS:localhost,IP:127.0.0.1"
# A device id becomes a certificate subject and a file name: keep to what is safe in both.
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_ALGORITHM: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


class CertificateError(Exception):
    """A certificate cannot be made: openssl is missing or failed, or a device id is unusable."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The three files a TLS listener needs: the CA clients are checked against, its certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """A device's client certificate (CN = its id) and private key."""

    device_id: str
    cert_file: Path
    key_file: Path


def openssl_binary() -> Path:
    """`openssl` from PATH, else Debian's /usr/bin/openssl; `CertificateError` if neither exists."""
    found = Path(which) if (which := shutil.which("openssl")) else OPENSSL_FALLBACK_BINARY
    if not found.exists():
        raise CertificateError(f"openssl not found at {found}: install the openssl package")
    return found


def init_certs(folder: Path, device_ids: tuple[str, ...] = ()) -> TlsFiles:
    """Make (or reuse) the CA in `folder`, a server certificate, and a client certificate per device id.

    An existing CA, server certificate or device certificate is kept: running this again is harmless.
    """
    for device_id in device_ids:
        _check_device_id(device_id)
    folder.mkdir(parents=True, exist_ok=True)
    # Mosquitto's user must enter the folder; the keys in it protect themselves.
    folder.chmod(0o755)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca_key = folder / "ca.key"
    if not (files.ca_file.exists() and ca_key.exists()):
        _openssl(
            "req", "-x509", *_KEY_ALGORITHM, "-nodes", "-keyout", str(ca_key), "-out", str(files.ca_file),
            "-days", str(CA_VALID_DAYS), "-subj", "/CN=fleetbridge development CA",
        )  # fmt: skip
        ca_key.chmod(0o600)
    if not (files.cert_file.exists() and files.key_file.exists()):
        _issue(folder, "localhost", files.cert_file, files.key_file, server=True)
        _share_with_mosquitto(files.key_file)
    for device_id in device_ids:
        device_certificate(folder, device_id)
    return files


def device_certificate(folder: Path, device_id: str) -> DeviceCertificate:
    """The client certificate of `device_id` signed by the CA in `folder`, made if it does not exist yet."""
    _check_device_id(device_id)
    devices = folder / "devices"
    devices.mkdir(exist_ok=True)
    cert = DeviceCertificate(device_id, devices / f"{device_id}.pem", devices / f"{device_id}.key")
    if not (cert.cert_file.exists() and cert.key_file.exists()):
        _issue(folder, device_id, cert.cert_file, cert.key_file, server=False)
    return cert


def _issue(folder: Path, common_name: str, cert_file: Path, key_file: Path, *, server: bool) -> None:
    extensions = (
        f"subjectAltName={SERVER_NAMES}\nextendedKeyUsage=serverAuth\n" if server else "extendedKeyUsage=clientAuth\n"
    )
    request = cert_file.with_suffix(".csr")
    extension_file = cert_file.with_suffix(".ext")
    extension_file.write_text(f"basicConstraints=CA:FALSE\n{extensions}")
    try:
        _openssl(
            "req", "-new", *_KEY_ALGORITHM, "-nodes", "-keyout", str(key_file), "-out", str(request),
            "-subj", f"/CN={common_name}",
        )  # fmt: skip
        key_file.chmod(0o600)
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"),
            "-CAcreateserial", "-out", str(cert_file), "-days", str(CERT_VALID_DAYS), "-extfile", str(extension_file),
        )  # fmt: skip
    finally:
        request.unlink(missing_ok=True)
        extension_file.unlink(missing_ok=True)


def _share_with_mosquitto(key_file: Path) -> None:
    """Let the mosquitto group read the server key (0640), when that group exists and we may hand it over."""
    try:
        gid = grp.getgrnam(MOSQUITTO_GROUP).gr_gid
    except KeyError:
        return
    if os.geteuid() == 0:
        os.chown(key_file, -1, gid)
        key_file.chmod(0o640)


def _check_device_id(device_id: str) -> None:
    if not _DEVICE_ID.fullmatch(device_id):
        raise CertificateError(
            f"device id {device_id!r} cannot name a certificate: use letters, digits, '.', '_' and '-'"
        )


def _openssl(*args: str) -> None:
    try:
        subprocess.run([str(openssl_binary()), *args], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise CertificateError(f"openssl {args[0]} failed: {exc.stderr.strip()}") from exc
