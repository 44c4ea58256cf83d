"""Reloading a running Mosquitto: found by the files it reads, never signalled with files it cannot read."""

from __future__ import annotations

import os
import time

import pytest

from broker.accounts import AccountFiles
from broker.acl import render_acl
from broker.reload import ReloadError, account_paths, find_brokers, reload_broker, write_files
from tests.integration.broker.conftest import SILENCE_S, AccountBroker

pytestmark = pytest.mark.integration


def test_find_brokers_finds_the_mosquitto_reading_the_password_file(account_broker: AccountBroker) -> None:
    assert find_brokers(account_paths(account_broker.accounts_dir)) == [account_broker.pid]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a broker started as root runs as another user")
def test_reload_refuses_files_the_broker_cannot_read(account_broker: AccountBroker) -> None:
    # Measured: a password file Mosquitto cannot read at a reload ends every connection.
    paths = write_files(account_broker.accounts_dir, AccountFiles("", render_acl([])))
    before = account_broker.reloads()
    paths.passwords.chmod(0o600)  # root's alone: the broker runs as mosquitto
    try:
        with pytest.raises(ReloadError, match="cannot read"):
            reload_broker(account_broker.pid, paths)
    finally:
        paths.passwords.chmod(0o640)

    time.sleep(SILENCE_S)
    assert account_broker.reloads() == before
