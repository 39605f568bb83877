"""PGMON_HOST=user@host:port through real SSH: the repository's inventory.py, run as the README says,
reaches the lab's sshd on its port as that user (not root, not port 22)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from .lab import REPO, SSH_PORT, run

pytestmark = pytest.mark.e2e

USER = "pgmon-ssh-check"  # a plain account: the lab's sshd takes the test key for every user


@pytest.fixture(scope="module")
def plain_user(lab):
    try:
        pwd.getpwnam(USER)
    except KeyError:
        run("useradd", "--create-home", "--shell", "/bin/sh", USER)
    yield USER
    run("userdel", "--remove", USER, check=False)


def pyinfra_as_readme_says(lab, pgmon_host: str, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGMON_HOST": pgmon_host}
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--key", str(lab.ssh_key),
         "--data", "ssh_known_hosts_file=/dev/null", "--data", "ssh_strict_host_key_checking=no",
         "inventory.py", "exec", "--", *command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_user_and_port_from_pgmon_host(lab, plain_user):
    result = pyinfra_as_readme_says(lab, f"{plain_user}@127.0.0.1:{SSH_PORT}", "id", "-un")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[127.0.0.1] >>> {plain_user}" in result.stdout or f"{plain_user}\n" in result.stdout, (
        result.stdout
    )


def test_a_wrong_port_is_the_one_tried(lab, plain_user):
    """The port is really used: one where nothing listens fails to connect, naming the host."""
    result = pyinfra_as_readme_says(lab, f"{plain_user}@127.0.0.1:1", "true")
    assert result.returncode != 0
    assert "127.0.0.1" in result.stdout + result.stderr
