"""The one door to pyinfra's internals: everything pgmon uses of pyinfra beyond its public API, and why.

pyinfra's public API runs a command to its end and hands back its output as text lines (operations,
facts, ``host.run_shell_command``), and copies files (``host.get_file``/``put_file``). pgmon needs four
things it does not offer; each goes through this module, and tests/unit/test_pyinfra_internals.py pins
every private name used here, so that a pyinfra release that changes one fails in CI:

- **A host's connector arguments** (``_sudo``, ``_su_user``, ``_env``, ``_chdir``... from its data, the
  config and the current ``@deploy``): ``pop_global_arguments`` and ``CONNECTOR_ARGUMENT_KEYS``
  (pyinfra.api.arguments). pgmon reads the host with ``host.run_shell_command`` rather than a fact because
  a fact prints its output at ``-vvv``, and that listing holds digests of secret files; that public call
  applies none of the host's arguments by itself.
- **A command wrapped as pyinfra would run it** (sudo, su, env, shell): ``make_unix_command_for_host``
  (pyinfra.connectors.util), given the command-line arguments only; ``extract_control_arguments`` removes
  those the connector handles itself (timeout, stdin, pty, exit codes).
- **Byte streams and long-lived commands**: a backup streams a tar.gz from the host's stdout, a restore
  streams one into its stdin, and the lock of ``host_lock`` is held by a command that runs until the run
  ends. The public API has text lines only, no stdin left open; ``host.get_file`` under sudo first copies
  the file to a world-readable temporary file. So pgmon opens its own session on the SSH connector's
  paramiko client (``SSHConnector.client``), or starts a local process for ``@local`` (gevent's Popen,
  pyinfra's own choice: it leaves the other hosts' greenlets running).
- **TCP channels** to the host's loopback (``direct-tcpip``, what ``ssh -L`` uses) for verification over
  HTTP: pyinfra has no public port forwarding; the same paramiko client carries them.

pyinfra prompts for a sudo password (when sudo asks for one) only in its own ``run_shell_command``; a
channel opened here would fail instead. So before the first wrapped command on a host whose ``_sudo``
has no password, one ``true`` goes through ``run_shell_command``, which prompts if sudo asks; the
password it keeps is then part of every wrapped command.

Which pyinfra: this module works with 3.4 and later 3.x (``pop_global_arguments(state, host, kwargs)``
from 3.4 on; before, ``kwargs`` came first). The connector arguments grew from 18 keys (3.4) to 25 (3.8);
the test lists the ones reviewed here, and a new one fails it until someone checks how the wrapping
treats it. (pgmon as a whole needs 3.5: step 2's ``--diff`` reads ``files.FileContents``.)
"""

from __future__ import annotations

import socket
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

import gevent
from gevent.subprocess import PIPE, Popen
from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.connectors.local import LocalConnector
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import extract_control_arguments, make_unix_command_for_host

from .settings import DeployError

if TYPE_CHECKING:
    from pyinfra.api import Host
    from pyinfra.connectors.util import CommandOutput

CHUNK = 1 << 16
SUDO_CHECK_TIMEOUT_SECONDS = 120

# Hosts on which a command of pgmon's went through pyinfra's run_shell_command (and its sudo prompt).
_prompted: weakref.WeakSet[Host] = weakref.WeakSet()


def connector_arguments(host: Host) -> dict:
    """The connector arguments that apply to ``host`` now, as an operation of pyinfra would get them."""
    arguments, _ = pop_global_arguments(host.state, host, {})
    return {key: arguments[key] for key in CONNECTOR_ARGUMENT_KEYS if key in arguments}


def run_unprinted(host: Host, command: str, timeout: int) -> tuple[bool, CommandOutput]:
    """``command`` through pyinfra's own ``run_shell_command``, with the host's connector arguments and
    nothing printed at any verbosity. Raises TimeoutError after ``timeout`` seconds."""
    arguments = {**connector_arguments(host), "_timeout": timeout}
    result = host.run_shell_command(command, print_output=False, print_input=False, **arguments)
    _prompted.add(host)
    return result


def wrapped_command(host: Host, script: str) -> str:
    """``script`` as pyinfra would run it on ``host`` (sudo, su, env, chdir, shell from the host's data)."""
    arguments = connector_arguments(host)
    extract_control_arguments(arguments)  # the connector's own, not the command line's
    if arguments.get("_sudo") and not arguments.get("_sudo_password") and host not in _prompted:
        run_unprinted(host, "true", SUDO_CHECK_TIMEOUT_SECONDS)
    return make_unix_command_for_host(
        host.state, host, StringCommand(script), **arguments
    ).get_raw_value()


def _require_channels(host: Host, purpose: str) -> None:
    if not isinstance(host.connector, (SSHConnector, LocalConnector)):
        raise DeployError(f"{host.name}: {purpose} needs pyinfra's ssh or local connector")


class HostProcess(ABC):
    """A command running on the host, with its byte streams: stdin written from here, stdout read as it
    comes, stderr kept for ``wait``. ``timeout`` bounds each read (TimeoutError)."""

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Write to its stdin."""

    @abstractmethod
    def end_input(self) -> None:
        """Close its stdin: the command reads the end of its input."""

    @abstractmethod
    def recv(self, size: int = CHUNK) -> bytes:
        """What stdout has now (waiting for some); b"" at its end."""

    @abstractmethod
    def wait(self) -> tuple[int, str]:
        """Read stdout to its end (discarding it), then (exit status, stderr)."""

    @abstractmethod
    def close(self) -> None:
        """End it: its stdin closes (a command holding something until then lets go)."""

    def lines(self) -> Iterator[str]:
        """stdout, line by line, as the lines come."""
        pending = b""
        while data := self.recv():
            *complete, pending = (pending + data).split(b"\n")
            yield from (line.decode(errors="replace") for line in complete)
        if pending:
            yield pending.decode(errors="replace")


class _SSHProcess(HostProcess):
    def __init__(self, connector: SSHConnector, command: str, timeout: float | None):
        self._channel = connector.client.get_transport().open_session()
        self._channel.settimeout(timeout)
        self._channel.exec_command(command)
        self._errors = b""

    def send(self, data: bytes) -> None:
        self._channel.sendall(data)

    def end_input(self) -> None:
        self._channel.shutdown_write()

    def _read_errors(self) -> None:
        # Read as stdout is: unread stderr would fill the channel's window and stall stdout.
        while self._channel.recv_stderr_ready():
            self._errors += self._channel.recv_stderr(CHUNK)

    def recv(self, size: int = CHUNK) -> bytes:
        data = self._channel.recv(size)
        self._read_errors()
        return data

    def wait(self) -> tuple[int, str]:
        while self.recv():
            pass
        status = self._channel.recv_exit_status()
        self._read_errors()
        self._channel.close()
        return status, self._errors.decode(errors="replace")

    def close(self) -> None:
        self._channel.close()


class _LocalProcess(HostProcess):
    def __init__(self, command: str, timeout: float | None):
        self._process = Popen(command, shell=True, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        self._timeout = timeout
        # Read alongside stdout: a full stderr pipe would stop the command.
        self._errors = gevent.spawn(self._process.stderr.read)

    def send(self, data: bytes) -> None:
        self._process.stdin.write(data)

    def end_input(self) -> None:
        self._process.stdin.close()

    def recv(self, size: int = CHUNK) -> bytes:
        with gevent.Timeout(self._timeout, TimeoutError):
            return self._process.stdout.read1(size)

    def wait(self) -> tuple[int, str]:
        while self.recv():
            pass
        status = self._process.wait()
        return status, self._errors.get().decode(errors="replace")

    def close(self) -> None:
        self._process.stdin.close()


def start_process(
    host: Host, script: str, purpose: str, timeout: float | None = None
) -> HostProcess:
    """Start ``script`` on ``host`` as pyinfra would run it (``wrapped_command``). ``purpose`` names what
    needs it, for the error on a connector other than ssh or local."""
    _require_channels(host, purpose)
    command = wrapped_command(host, script)
    if isinstance(host.connector, SSHConnector):
        return _SSHProcess(host.connector, command, timeout)
    return _LocalProcess(command, timeout)


def tcp_channel_opener(host: Host, purpose: str, timeout: float):
    """A function (address, port) -> a socket-like connection to that address as the host sees it: an SSH
    ``direct-tcpip`` channel, or with ``@local`` a socket."""
    _require_channels(host, purpose)
    connector = host.connector
    if isinstance(connector, SSHConnector):

        def open_channel(address: str, port: int):
            channel = connector.client.get_transport().open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout
            )
            channel.settimeout(timeout)
            return channel

        return open_channel
    return lambda address, port: socket.create_connection((address, port), timeout=timeout)
