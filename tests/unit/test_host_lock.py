"""The lock of tasks/host_lock.py on a real ``@local`` host: held by one run until that run ends, whatever
else runs in the same Python process (pgmon used as a library)."""

import time
from pathlib import Path
from types import SimpleNamespace

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all

from tasks.host_lock import _claim
from tasks.host_state import holder_check_command, host_output, lock_path, read_host_state


def run_host():
    """The ``@local`` host of a new pyinfra run."""
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    return inventory.get_host("@local")


def wait_until_free(host, base_dir: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while host_output(host, holder_check_command(base_dir)):
        assert time.monotonic() < deadline, "the lock was not released"
        time.sleep(0.05)


def test_a_second_run_in_the_same_process_claims_the_host_again(tmp_path):
    base_dir = str(tmp_path / "pgmon")
    settings = SimpleNamespace(
        config=SimpleNamespace(base_dir=base_dir, project="pgmon-lock-test", take_over_lock=False)
    )
    first = run_host()
    assert _claim(first.state, first, settings, read_host_state(first, settings), False)
    assert _claim(first.state, first, settings, None, False)  # later operations of that run: held

    second = run_host()  # same name, another run
    planned = read_host_state(second, settings)
    assert planned.held_by is not None
    assert not _claim(second.state, second, settings, planned, False)  # the first run holds it

    first.disconnect()  # the first run ends
    wait_until_free(second, base_dir)
    assert _claim(second.state, second, settings, read_host_state(second, settings), False)
    second.disconnect()
    wait_until_free(run_host(), base_dir)
    Path(lock_path(base_dir) + ".lock").unlink()


def test_a_claim_that_cannot_open_the_lock_fails_clearly(tmp_path, caplog):
    base_dir = str(tmp_path / "pgmon")
    settings = SimpleNamespace(
        config=SimpleNamespace(base_dir=base_dir, project="pgmon-lock-test", take_over_lock=False)
    )
    Path(lock_path(base_dir) + ".lock").mkdir(parents=True)  # the script's open of the lock fails
    try:
        host = run_host()
        assert not _claim(host.state, host, settings, read_host_state(host, settings), False)
        assert f"could not claim {base_dir} on the host (the lock script ended with status " in (
            caplog.text
        )
        assert "nothing was changed" in caplog.text
        host.disconnect()
    finally:
        Path(lock_path(base_dir) + ".lock").rmdir()
