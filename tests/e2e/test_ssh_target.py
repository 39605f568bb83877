"""PGMON_HOST=user@host:port through real SSH: the repository's inventory.py, run as the README says,
reaches an sshd on its own port as a plain user (not root, not port 22, not the lab's port)."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys

import pytest

from .lab import REPO, run, wait_until

pytestmark = pytest.mark.e2e

USER = "pgmon-ssh-check"
PORT = 2223


def _listening() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", PORT)) == 0


@pytest.fixture(scope="module")
def plain_user_sshd(lab, tmp_path_factory):
    """A plain account holding the lab's test key, and an sshd for it on PORT."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        run("useradd", "--create-home", "--shell", "/bin/sh", USER)
    # No password, but not locked: sshd without PAM refuses a locked account ('!') even with a key.
    run("usermod", "--password", "*", USER)
    home = pwd.getpwnam(USER).pw_dir
    run("install", "-d", "-m", "700", "-o", USER, f"{home}/.ssh")
    run("install", "-m", "600", "-o", USER, f"{lab.ssh_key}.pub", f"{home}/.ssh/authorized_keys")
    folder = tmp_path_factory.mktemp("sshd")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {lab.dir}/ssh_host_ed25519_key\n"
        "AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\nUsePAM no\n"
        f"AllowUsers {USER}\nPidFile {folder}/sshd.pid\n"
    )
    log = open(folder / "sshd.log", "ab")
    sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log, stderr=log
    )
    try:
        wait_until(f"sshd on port {PORT}", _listening, 30)
        yield USER
    finally:
        sshd.terminate()
        sshd.wait(30)
        log.close()
        run("userdel", "--remove", USER, check=False)


def pyinfra_as_readme_says(lab, pgmon_host: str, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGMON_HOST": pgmon_host}
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--key", str(lab.ssh_key),
         "--data", "ssh_known_hosts_file=/dev/null", "--data", "ssh_strict_host_key_checking=no",
         "inventory.py", "exec", "--", *command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_user_and_port_from_pgmon_host(lab, plain_user_sshd):
    result = pyinfra_as_readme_says(lab, f"{plain_user_sshd}@127.0.0.1:{PORT}", "id", "-un")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr  # pyinfra logs on stderr
    assert f"[127.0.0.1] {plain_user_sshd}\n" in output, output


def test_the_port_written_is_the_one_tried(lab, plain_user_sshd):
    """Nothing listens on port 1: the run fails to connect there, naming the user it tried."""
    result = pyinfra_as_readme_says(lab, f"{plain_user_sshd}@127.0.0.1:1", "true")
    assert result.returncode != 0
    assert "No hosts remaining" in result.stdout + result.stderr
