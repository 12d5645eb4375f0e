"""A machine without network: every connection attempt fails as it would offline, and is counted
(so a test can also assert that nothing tried to connect)."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    attempts: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        attempts.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test: offline)")

    def connect(self, address):
        attempts.append(str(address))
        raise ConnectionRefusedError("test: offline")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return attempts
