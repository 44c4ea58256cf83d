"""The development CA and certificates made with the openssl CLI (a local binary; no network)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from broker.certs import CertificateError, device_certificate, init_certs, openssl_binary
from cli.main import run


def _openssl(*args: str) -> str:
    return subprocess.run([str(openssl_binary()), *args], check=True, capture_output=True, text=True).stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_certs_makes_a_ca_and_a_server_certificate_for_localhost(tmp_path: Path) -> None:
    files = init_certs(tmp_path / "certs")

    assert "OK" in _openssl("verify", "-CAfile", str(files.ca_file), str(files.cert_file))
    names = _openssl("x509", "-in", str(files.cert_file), "-noout", "-ext", "subjectAltName")
    assert "DNS:localhost" in names
    assert "IP Address:127.0.0.1" in names
    assert _mode(tmp_path / "certs" / "ca.key") == 0o600
    assert _mode(files.key_file) & 0o007 == 0, "no one outside the owner and the mosquitto group reads the key"


def test_init_certs_again_reuses_the_ca_and_the_server_certificate(tmp_path: Path) -> None:
    first = init_certs(tmp_path)
    ca, server = first.ca_file.read_bytes(), first.cert_file.read_bytes()

    again = init_certs(tmp_path, ("truck-7",))

    assert again == first
    assert (again.ca_file.read_bytes(), again.cert_file.read_bytes()) == (ca, server)


def test_device_certificate_names_the_device_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    files = init_certs(tmp_path)

    device = device_certificate(tmp_path, "truck-7")

    assert "CN=truck-7" in _openssl("x509", "-in", str(device.cert_file), "-noout", "-subject").replace(" ", "")
    assert "OK" in _openssl("verify", "-CAfile", str(files.ca_file), str(device.cert_file))
    assert _mode(device.key_file) == 0o600


@pytest.mark.parametrize("device_id", ["", "../etc", "a/b", "truck 7", "-x"])
def test_device_certificate_refuses_an_id_unfit_for_a_subject_or_file_name(tmp_path: Path, device_id: str) -> None:
    with pytest.raises(CertificateError, match="device id"):
        init_certs(tmp_path, (device_id,))


def test_fleet_certs_init_writes_into_the_given_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run(["certs", "init", "--dir", str(tmp_path), "--device", "truck-7"], {})

    assert status == 0
    assert (tmp_path / "ca.pem").exists()
    assert (tmp_path / "devices" / "truck-7.pem").exists()
    assert "truck-7" in capsys.readouterr().err
