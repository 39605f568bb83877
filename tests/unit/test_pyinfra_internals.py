"""The private surface of pyinfra that tasks/pyinfra_internals.py relies on, pinned: a pyinfra release that
changes a signature, adds a connector argument or renames the SSH connector's client fails here, in CI,
rather than at a user's claim step. Then the adapter's behaviour on a real ``@local`` host."""

import inspect
import socket
import threading
from types import SimpleNamespace

import gevent
import paramiko
import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.connect import connect_all
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.sshuserclient import SSHClient
from pyinfra.connectors.util import (
    extract_control_arguments,
    make_unix_command,
    make_unix_command_for_host,
)

from tasks.pyinfra_internals import (
    connector_arguments,
    start_process,
    tcp_channel_opener,
    wrapped_command,
)
from tasks.settings import DeployError

# What the connector handles itself; extract_control_arguments takes exactly these off the command line.
CONTROL_KEYS = {"_success_exit_codes", "_timeout", "_get_pty", "_stdin"}
# Every connector argument reviewed for wrapped_command: pyinfra 3.4 has the first 18, 3.5 21, 3.8 and
# 3.10 all 25. An older release with fewer passes; a new key fails until it is reviewed here.
REVIEWED_KEYS = CONTROL_KEYS | {
    "_sudo",
    "_sudo_user",
    "_use_sudo_login",
    "_sudo_password",
    "_preserve_sudo_env",
    "_su_user",
    "_use_su_login",
    "_preserve_su_env",
    "_su_shell",
    "_doas",
    "_doas_user",
    "_shell_executable",
    "_chdir",
    "_env",
    # Added from 3.5 on:
    "_su_password",
    "_dzdo",
    "_dzdo_user",
    "_retries",
    "_retry_delay",
    "_retry_until",
    "_temp_dir",
}


def parameters(function) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_the_private_functions_have_the_signatures_pgmon_calls():
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert parameters(pop_global_arguments) == [
        ("state", positional),
        ("host", positional),
        ("kwargs", positional),
    ]  # before 3.4: (kwargs, state=None, host=None, keys_to_check=None)
    assert parameters(extract_control_arguments) == [("arguments", positional)]
    assert parameters(make_unix_command_for_host) == [
        ("state", positional),
        ("host", positional),
        ("command", positional),
        ("command_arguments", inspect.Parameter.VAR_KEYWORD),
    ]


def test_the_connector_arguments_are_the_reviewed_ones_and_each_is_handled():
    keys = set(CONNECTOR_ARGUMENT_KEYS)
    assert keys <= REVIEWED_KEYS, (
        f"review how wrapped_command treats {sorted(keys - REVIEWED_KEYS)}"
    )
    arguments = dict.fromkeys(keys)
    assert set(extract_control_arguments(arguments)) == CONTROL_KEYS & keys
    # What is left goes to the command line: make_unix_command takes every one of them.
    assert set(arguments) <= set(inspect.signature(make_unix_command).parameters)


def test_the_ssh_connector_keeps_the_paramiko_client_pgmon_opens_channels_on():
    assert "client" in SSHConnector.__annotations__
    assert "self.client = SSHClient()" in inspect.getsource(SSHConnector)
    assert issubclass(SSHClient, paramiko.SSHClient)
    assert callable(paramiko.SSHClient.get_transport)
    assert "timeout" in inspect.signature(paramiko.Transport.open_channel).parameters
    assert callable(paramiko.Transport.open_session)
    used = ["exec_command", "settimeout", "sendall", "shutdown_write", "recv"]
    used += ["recv_stderr_ready", "recv_stderr", "recv_exit_status", "close"]
    assert all(callable(getattr(paramiko.Channel, name, None)) for name in used)


def local_host(**data):
    """The ``@local`` host of a fresh pyinfra run, with ``data`` as its host data."""
    inventory = Inventory((["@local"], data))
    state = State(inventory, Config())
    connect_all(state)
    return inventory.get_host("@local")


def test_commands_are_wrapped_with_the_hosts_arguments(tmp_path):
    host = local_host(_env={"PGMON_GREETING": "a b'c"}, _chdir=str(tmp_path), _timeout=5)
    assert connector_arguments(host)["_timeout"] == 5  # there, but not on the command line
    command = wrapped_command(host, 'echo "$PGMON_GREETING" && pwd')
    process = start_process(host, 'echo "$PGMON_GREETING" && pwd', "this test")
    assert [line for line in process.lines()] == ["a b'c", str(tmp_path)]
    assert "_timeout" not in command and process.wait() == (0, "")


def test_a_process_streams_bytes_both_ways_and_keeps_stderr():
    host = local_host()
    process = start_process(host, "cat; echo done >&2; exit 3", "this test")
    data = bytes(range(256)) * 4096  # more than any pipe holds: written while it is read
    received = bytearray()

    def read():
        while chunk := process.recv():
            received.extend(chunk)

    reader = gevent.spawn(read)  # pyinfra's greenlets, as in a run
    process.send(data)
    process.end_input()
    reader.join(timeout=30)
    assert bytes(received) == data
    assert process.wait() == (3, "done\n")


def test_lines_come_as_they_are_printed_and_a_read_has_a_deadline():
    host = local_host()
    process = start_process(host, "echo one; echo two; cat >/dev/null", "this test", timeout=10)
    lines = process.lines()
    assert (next(lines), next(lines)) == ("one", "two")  # while its stdin is still open
    process.close()
    assert list(lines) == []
    slow = start_process(host, "sleep 30", "this test", timeout=0.2)
    with pytest.raises(TimeoutError):
        slow.recv()
    slow.close()


def test_tcp_channels_reach_the_hosts_loopback():
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: listener.accept()[0].sendall(b"hello"), daemon=True).start()
    connection = tcp_channel_opener(local_host(), "this test", 5)(*listener.getsockname())
    try:
        assert connection.recv(5) == b"hello"
    finally:
        connection.close()
        listener.close()


def test_another_connector_is_refused_naming_what_needs_the_channel():
    host = SimpleNamespace(name="box", connector=object())
    with pytest.raises(DeployError, match="box: pgmon's backup and restore needs pyinfra's ssh"):
        start_process(host, "true", "pgmon's backup and restore")
    with pytest.raises(DeployError, match="box: verification needs"):
        tcp_channel_opener(host, "verification", 5)


def test_sudo_gets_its_chance_to_ask_for_a_password_once_before_a_channel(monkeypatch):
    """pyinfra prompts for sudo's password in run_shell_command only: one ``true`` goes through it first."""
    host = local_host(_sudo=True)
    ran = []
    monkeypatch.setattr(
        host, "run_shell_command", lambda command, **arguments: ran.append(command) or (True, None)
    )
    first, second = wrapped_command(host, "id -u"), wrapped_command(host, "id -u")
    assert ran == ["true"] and first == second and first.startswith("sudo ")
    assert wrapped_command(local_host(_sudo=True, _sudo_password="x"), "true")  # nothing to ask
    assert wrapped_command(local_host(), "true") == "sh -c true"
