"""A development certificate authority and the broker's and devices' certificates, made with the `openssl` CLI.

For the local stack and the tests only: production certificates come from the operator's own PKI. The CA
is made once and reused, so certificates already handed to devices stay valid; the server certificate
names `localhost` and 127.0.0.1. Private keys are 0600, except the server key, which the `mosquitto`
group may read: Mosquitto started as root drops to that user before it loads its certificates.

A device certificate (CN = device id) is a login on the broker's certificate listener, which takes no
password: the CA's certificate revocation list (`crl.pem`, kept by `openssl ca` in its small database
beside the CA) is how one is refused again. Mosquitto 2.0.11 rereads the list on SIGHUP (measured:
tests/integration/broker/test_certificate_identity.py), so a revocation takes effect at the same kind
of reload as an account change.
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
# The list is rewritten at every `init_certs` and revocation; a production CA publishes its own.
CRL_VALID_DAYS: Final = CERT_VALID_DAYS
SERVER_NAMES: Final = "DNS:localhost,IP:127.0.0.1"
# A device id becomes a certificate subject and a file name: keep to what is safe in both.
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_ALGORITHM: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


class CertificateError(Exception):
    """A certificate cannot be made: openssl is missing or failed, or a device id is unusable."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What a TLS listener needs: the CA clients are checked against, its certificate and key, and the CA's
    revocation list (required where a certificate is an identity: without it, it could never be refused)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path | None = None


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
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "crl.pem")
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
    # Renewed at every run: a CRL past its next-update date makes OpenSSL refuse every client certificate.
    _write_crl(folder)
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


def revoke_device_certificate(folder: Path, device_id: str) -> bool:
    """Put the certificate of `device_id` on the CA's revocation list and rewrite the list; False if it has none.

    The certificate and key files are removed, so `device_certificate` makes a new pair for the device
    (a replacement unit, a reinstated device) while the old serial stays refused. The broker rereads the
    list at its next reload (SIGHUP); a connection already open stays open until then and after.
    """
    _check_device_id(device_id)
    cert_file = folder / "devices" / f"{device_id}.pem"
    if not cert_file.exists():
        return False
    _openssl("ca", "-config", str(_ca_config(folder)), "-revoke", str(cert_file))
    _write_crl(folder)
    cert_file.unlink()
    (folder / "devices" / f"{device_id}.key").unlink(missing_ok=True)
    return True


def _write_crl(folder: Path) -> None:
    """(Re)write `crl.pem` from the CA's database of revoked serials, replacing the old list atomically."""
    crl = folder / "crl.pem"
    fresh = folder / ".crl.pem.new"
    _openssl("ca", "-config", str(_ca_config(folder)), "-gencrl", "-out", str(fresh))
    fresh.chmod(0o644)  # a revocation list is public, and Mosquitto's user must read it
    fresh.replace(crl)


def _ca_config(folder: Path) -> Path:
    """The `openssl ca` configuration of the development CA, and its database, made on first use."""
    database = folder / "ca-index.txt"
    if not database.exists():
        database.write_text("")
    number = folder / "ca-crlnumber"
    if not number.exists():
        number.write_text("01\n")
    config = folder / "ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca = fleetbridge_ca\n[fleetbridge_ca]\n"
        f"database = {database}\ncrlnumber = {number}\n"
        f"certificate = {folder / 'ca.pem'}\nprivate_key = {folder / 'ca.key'}\n"
        f"default_md = sha256\ndefault_crl_days = {CRL_VALID_DAYS}\n"
    )
    return config


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
