"""The lock of tasks/host_lock.py on a real ``@local`` host: held by one run until that run ends, whatever
else runs in the same Python process (pgmon used as a library)."""

import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.context import ctx_host, ctx_state

from tasks import docker_engine, host_state
from tasks.host_lock import _claim, claim_script
from tasks.host_state import (
    HostState,
    holder_check_command,
    host_output,
    lock_path,
    read_host_state,
)


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    """A lock directory of the test's own: the machine's /run/pgmon is the end-to-end runs'."""
    path = tmp_path / "run-pgmon"
    monkeypatch.setattr(host_state, "LOCK_DIR", str(path))
    return path


def lock_settings(tmp_path, take_over: bool = False):
    return SimpleNamespace(
        config=SimpleNamespace(
            base_dir=str(tmp_path / "pgmon"), project="pgmon-lock-test", take_over_lock=take_over
        )
    )


def run_host():
    """The ``@local`` host of a new pyinfra run."""
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    return inventory.get_host("@local")


def wait_until_free(host, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while host_output(host, holder_check_command()):
        assert time.monotonic() < deadline, "the lock was not released"
        time.sleep(0.05)


def test_a_second_run_in_the_same_process_claims_the_host_again(tmp_path):
    settings = lock_settings(tmp_path)
    first = run_host()
    assert _claim(first.state, first, settings, read_host_state(first, settings), False)
    assert _claim(first.state, first, settings, None, False)  # later operations of that run: held

    second = run_host()  # same name, another run
    planned = read_host_state(second, settings)
    assert planned.held_by is not None
    assert not _claim(second.state, second, settings, planned, False)  # the first run holds it

    first.disconnect()  # the first run ends
    wait_until_free(second)
    assert _claim(second.state, second, settings, read_host_state(second, settings), False)
    second.disconnect()
    wait_until_free(run_host())


def test_one_lock_for_the_host_whatever_base_dir_a_run_changes(tmp_path, caplog):
    """Two base_dirs may name one Compose project, and every run may install Docker: one run at a time."""
    first, second = lock_settings(tmp_path / "a"), lock_settings(tmp_path / "b")
    one = run_host()
    assert _claim(one.state, one, first, read_host_state(one, first), False)
    other = run_host()
    assert not _claim(other.state, other, second, read_host_state(other, second), False)
    assert "another pgmon run is changing @local: " in caplog.text
    assert f", for {first.config.base_dir}. This run changed nothing." in caplog.text
    other.disconnect()
    one.disconnect()


def test_a_claim_that_cannot_open_the_lock_fails_clearly(tmp_path, caplog):
    settings = lock_settings(tmp_path)
    Path(lock_path() + ".lock").mkdir(parents=True)  # the script's open of the lock fails
    Path(lock_path()).parent.chmod(0o700)
    host = run_host()
    assert not _claim(host.state, host, settings, read_host_state(host, settings), False)
    assert (
        f"could not claim {settings.config.base_dir} on the host (the lock script ended with status "
        in caplog.text
    )
    assert "nothing was changed" in caplog.text
    host.disconnect()


def test_the_lock_is_kept_where_no_other_user_may_write(tmp_path, lock_dir, caplog):
    settings = lock_settings(tmp_path)
    host = run_host()
    assert _claim(host.state, host, settings, read_host_state(host, settings), False)
    assert (lock_dir.stat().st_mode & 0o7777, lock_dir.stat().st_uid) == (0o700, os.getuid())
    host.disconnect()

    lock_dir.chmod(0o1777)  # as /run/lock is: anyone could forge the record or hold the lock
    host = run_host()
    assert not _claim(host.state, host, settings, read_host_state(host, settings), False)
    assert f"{lock_dir} must be a directory of " in caplog.text
    host.disconnect()


def wait_for(condition, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_take_over_ends_the_run_that_holds_the_lock_and_fences_it(tmp_path, caplog):
    settings = lock_settings(tmp_path)
    hung = run_host()
    assert _claim(hung.state, hung, settings, read_host_state(hung, settings), False)
    taker = run_host()
    assert _claim(taker.state, taker, settings, read_host_state(taker, settings), True)
    assert _claim(taker.state, taker, settings, None, True)  # the taker's next operation goes on
    # The displaced run wakes up: its next operation that changes the host fails, changing nothing.
    assert not _claim(hung.state, hung, settings, None, False)
    assert f"this run no longer holds the lock of {hung.name}: another run took it over" in (
        caplog.text
    )
    taker.disconnect()
    hung.disconnect()


def test_a_take_over_ends_only_a_process_that_holds_the_lock(tmp_path, lock_dir):
    """A holder record naming some other process (forged, or left by a run that died, its PID since reused)
    must not get that process killed."""
    settings = lock_settings(tmp_path, take_over=True)
    lock_dir.mkdir(mode=0o700)
    lock = lock_path()
    bystander = subprocess.Popen(["sleep", "60"])
    squatter = subprocess.Popen(["flock", lock + ".lock", "sleep", "60"])  # holds the lock
    try:
        wait_for(
            lambda: subprocess.run(["flock", "-n", lock + ".lock", "true"]).returncode != 0,
            "the squatter did not take the lock",
        )
        Path(lock + ".holder").write_text(f"by=mallory from=x pid={bystander.pid} since=now\n")
        host = run_host()
        assert not _claim(host.state, host, settings, read_host_state(host, settings), True)
        assert bystander.poll() is None, (
            "the take-over killed a process that does not hold the lock"
        )
        host.disconnect()
    finally:
        bystander.kill()
        squatter.kill()
        bystander.wait()
        squatter.wait()


def test_probes_of_dry_runs_never_refuse_a_claim(tmp_path, lock_dir):
    """--dry and no-change runs look for a holder; however often they look, a real run claims."""
    settings = lock_settings(tmp_path)
    lock_dir.mkdir(mode=0o700)
    stop = tmp_path / "stop"
    probe = holder_check_command()
    probes = [
        subprocess.Popen(["sh", "-c", f"while [ ! -e {stop} ]; do {probe}; done"]) for _ in range(3)
    ]
    script = claim_script(settings, "admin@laptop", take_over=False)
    try:
        answers = [
            subprocess.run(["sh", "-c", script], stdin=subprocess.DEVNULL, capture_output=True)
            for _ in range(30)
        ]
    finally:
        stop.touch()
        for prober in probes:
            prober.wait(timeout=10)
    refused = [a for a in answers if not re.search(rb"^claimed [0-9]+$", a.stdout, re.MULTILINE)]
    assert not refused, f"{len(refused)} of {len(answers)} claims refused: {refused[0].stdout!r}"


def test_docker_is_installed_under_the_lock(settings, monkeypatch):
    """Installing Docker changes the host: the run claims it first, as for every other change."""
    monkeypatch.setattr(docker_engine.systemd, "service", lambda **kwargs: None)  # no systemd here
    host = run_host()
    with ctx_state.use(host.state), ctx_host.use(host):
        docker_engine.install_docker(settings, HostState(None, None, False))
        ops = host.state.get_op_order()
        commands = list(host.state.get_op_data_for_host(host, ops[0]).command_generator())
    assert getattr(commands[0], "function", None) is _claim, "Docker is installed before the claim"
    assert ops[1:], "no operation installs Docker"
