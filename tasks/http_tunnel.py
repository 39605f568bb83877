"""HTTP to the processing host's loopback, carried through pyinfra's own SSH connection.

Prometheus and Alertmanager listen on the host's 127.0.0.1 only, and the
admin's laptop may reach nothing but SSH, so verification opens a
``direct-tcpip`` channel (what ``ssh -L`` uses) per request. With the
``@local`` connector it connects directly.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket

from pyinfra.connectors.local import LocalConnector
from pyinfra.connectors.ssh import SSHConnector

from .settings import DeployError


class _TunnelledConnection(http.client.HTTPConnection):
    def __init__(self, open_socket, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._open_socket = open_socket

    def connect(self) -> None:
        self.sock = self._open_socket()


class HostHTTP:
    """``get(address, port, path)`` from the host's point of view; returns (status, body)."""

    def __init__(self, host, timeout: float = 10.0):
        self.host = host
        self.timeout = timeout
        self._connections: dict[tuple[str, int], _TunnelledConnection] = {}  # kept alive between requests
        if not isinstance(host.connector, (SSHConnector, LocalConnector)):
            raise DeployError(f"{host.name}: verification needs the ssh or local connector")

    def _socket_factory(self, address: str, port: int):
        connector = self.host.connector
        if isinstance(connector, SSHConnector):
            transport = connector.client.get_transport()

            def open_channel():
                channel = transport.open_channel(
                    "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=self.timeout
                )
                channel.settimeout(self.timeout)
                return channel

            return open_channel
        return lambda: socket.create_connection((address, port), timeout=self.timeout)

    def get(self, address: str, port: int, path: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        """Status 0 means nothing answered; the body then says why."""
        headers = {"Accept": "application/json"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        key = (address, port)
        for attempt in (1, 2):  # a kept-alive connection the server closed gets one fresh retry
            connection = self._connections.get(key)
            if connection is None:
                connection = self._connections[key] = _TunnelledConnection(
                    self._socket_factory(address, port), self.timeout)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except Exception as error:  # refused channel, timeout, reset: all mean "not answering"
                self._connections.pop(key).close()
                if attempt == 2:
                    return 0, f"{type(error).__name__}: {error}".encode()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def get_json(self, address: str, port: int, path: str, auth=None):
        status, body = self.get(address, port, path, auth)
        try:
            return status, json.loads(body) if status else None
        except ValueError:
            return status, None
