"""HTTP to the processing host's loopback, carried through pyinfra's own SSH connection.

Prometheus and Alertmanager listen on the host's 127.0.0.1 only, and the
admin's laptop may reach nothing but SSH, so verification opens a
``direct-tcpip`` channel (what ``ssh -L`` uses; ``pyinfra_internals``) per request. With the
``@local`` connector it connects directly. HTTPS (Grafana's) runs TLS over that
channel, accepting exactly the certificate the caller pins.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import ssl

from .pyinfra_internals import tcp_channel_opener


class _TunnelledConnection(http.client.HTTPConnection):
    def __init__(
        self,
        open_socket,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        pin: bytes | None = None,
    ):
        super().__init__("localhost", timeout=timeout)
        self._open_socket = open_socket
        self._tls, self._pin = tls, pin

    def connect(self) -> None:
        raw = self._open_socket()
        if self._tls is None:
            self.sock = raw
            return
        try:
            self.sock = TLSStream(raw, self._tls, self._pin)
        except BaseException:
            raw.close()
            raise


class TLSStream:
    """TLS over any stream that has ``sendall``/``recv``/``close`` (an SSH channel, a socket), through ssl's memory
    BIOs, for http.client. With ``pin``, the server must present exactly that certificate (DER)."""

    def __init__(self, raw, context: ssl.SSLContext, pin: bytes | None = None):
        self._raw = raw
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing)
        self._run(self._tls.do_handshake)
        if pin is not None and self._tls.getpeercert(binary_form=True) != pin:
            raise ssl.SSLCertVerificationError(
                "the server presents a certificate other than the one pgmon knows"
            )

    def _run(self, step, *args):
        while True:
            try:
                result = step(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._raw.sendall(data)

    def sendall(self, data) -> None:
        view = memoryview(data)
        while len(view):
            view = view[self._run(self._tls.write, view) :]

    def recv(self, size: int) -> bytes:
        try:
            return self._run(self._tls.read, size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def makefile(self, mode: str = "rb", *args, **kwargs):
        stream = self

        class Reader(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer) -> int:
                data = stream.recv(len(buffer))
                buffer[: len(data)] = data
                return len(data)

        return io.BufferedReader(Reader())

    def settimeout(self, timeout) -> None:
        self._raw.settimeout(timeout)

    def close(self) -> None:
        self._raw.close()


class HostHTTP:
    """``get(address, port, path)`` from the host's point of view; returns (status, body)."""

    def __init__(self, host, timeout: float = 10.0):
        self.host = host
        self.timeout = timeout
        self._open_channel = tcp_channel_opener(host, "verification", timeout)
        # Kept alive between requests.
        self._connections: dict[tuple[str, int, bool], _TunnelledConnection] = {}

    def get(
        self,
        address: str,
        port: int,
        path: str,
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        pin: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Status 0 means nothing answered (or, with ``tls``, not with the pinned certificate); the body says why."""
        headers = {"Accept": "application/json"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        key = (address, port, tls is not None)
        for attempt in (1, 2):  # a kept-alive connection the server closed gets one fresh retry
            connection = self._connections.get(key)
            if connection is None:
                connection = self._connections[key] = _TunnelledConnection(
                    lambda: self._open_channel(address, port), self.timeout, tls, pin
                )
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

    def get_json(self, address: str, port: int, path: str, auth=None, tls=None, pin=None):
        status, body = self.get(address, port, path, auth, tls, pin)
        try:
            return status, json.loads(body) if status else None
        except ValueError:
            return status, None
