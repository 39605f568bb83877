"""Grafana's secret_key (tasks/grafana_key.py): the file Grafana reads it from, the check recorded in its data
volume, and the runs refused before anything changes. Grafana itself is a stand-in in this suite: what is tested
here is pgmon's side, with the volume listing and the recording run by a real shell against a stand-in
``docker`` that answers ``volume inspect`` with a folder."""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest
import yaml

import tasks.grafana_key
import tasks.stack_containers
from tasks.grafana_key import (
    CHECK_FILE,
    SECRET_KEY_FILE,
    VOLUME_CHECK_FILE,
    GrafanaVolume,
    grafana_volume_command,
    key_check,
    record_key_command,
    refuse_other_grafana_key,
)
from tasks.host_facts import parse_facts
from tasks.host_state import HOST_FACTS
from tasks.render import render_stack
from tasks.settings import DeployError, build_settings
from tasks.stack_containers import compose_up
from tasks.stack_model import GRAFANA_UID

from .conftest import ENVIRON, group_data
from .test_plans import HostExecuting

KEY = ENVIRON["GRAFANA_KEY"]


@pytest.fixture
def named_host(monkeypatch):
    monkeypatch.setattr(tasks.grafana_key, "host", SimpleNamespace(name="box"))


def settings_with(key_env: str | None = "GRAFANA_KEY", **environ):
    return build_settings(group_data(pgmon_grafana_secret_key_env=key_env), {**ENVIRON, **environ})


@pytest.mark.parametrize(
    "volume, key_env",
    [
        (None, "GRAFANA_KEY"),  # a new host
        (None, None),
        (
            GrafanaVolume(has_data=False, check=None),
            "GRAFANA_KEY",
        ),  # made by `up --no-start`, never started
        (GrafanaVolume(has_data=True, check=None), None),  # the default, kept on purpose
        (GrafanaVolume(has_data=True, check=key_check(KEY)), "GRAFANA_KEY"),
        (GrafanaVolume(has_data=False, check=key_check(KEY)), "GRAFANA_KEY"),
    ],
)
def test_the_key_that_made_the_data_or_a_new_volume_goes_ahead(named_host, volume, key_env):
    refuse_other_grafana_key(settings_with(key_env), volume)


@pytest.mark.parametrize(
    "volume, key_env, expected",
    [
        (
            GrafanaVolume(has_data=True, check=key_check("another key, made for another host!")),
            "GRAFANA_KEY",
            "GRAFANA_KEY holds another key than the one Grafana's data on box (volume pgmon_grafana-data)",
        ),
        (
            GrafanaVolume(has_data=True, check=None),
            "GRAFANA_KEY",
            "was made with Grafana's public default secret_key",
        ),
        (
            GrafanaVolume(has_data=True, check=key_check(KEY)),
            None,
            "is None, but Grafana's data on box (volume pgmon_grafana-data) was made with a secret_key",
        ),
    ],
)
def test_another_key_for_grafanas_data_is_refused_without_repeating_it(
    named_host, volume, key_env, expected
):
    with pytest.raises(DeployError) as refused:
        refuse_other_grafana_key(settings_with(key_env), volume)
    message = str(refused.value)
    assert expected in message and "Nothing was changed" in message
    assert KEY not in message and key_check(KEY).split(":")[-1] not in message


def test_the_way_out_of_the_default_key_names_the_setting_and_the_volume(named_host):
    with pytest.raises(DeployError) as refused:
        refuse_other_grafana_key(settings_with(), GrafanaVolume(has_data=True, check=None))
    assert "pgmon_grafana_secret_key_env = None" in str(refused.value)
    assert "docker rm -f pgmon-grafana && docker volume rm pgmon_grafana-data" in str(refused.value)


def test_the_check_tells_keys_apart_and_holds_no_key():
    assert key_check(KEY) == key_check(KEY) != key_check(KEY + "x")
    assert KEY not in key_check(KEY) and key_check(KEY).startswith("pbkdf2-sha256:")


def test_grafana_reads_the_key_from_a_file_only_it_reads(dashboard_9628):
    stack = render_stack(settings_with(), dashboard_9628)
    files = {f.path: f for f in stack.files}
    key_file, check = files[SECRET_KEY_FILE], files[CHECK_FILE]
    assert key_file.content == KEY.encode() and key_file.secret
    assert (key_file.mode, key_file.uid) == (0o400, GRAFANA_UID)
    assert (check.mode, check.uid) == (0o400, 0) and KEY.encode() not in check.content
    assert check.content.decode().strip() == key_check(KEY)
    grafana = yaml.safe_load(files["docker-compose.yml"].content)["services"]["grafana"]
    assert (
        grafana["environment"]["GF_SECURITY_SECRET_KEY__FILE"] == "/etc/grafana/secrets/secret_key"
    )
    assert any(v.endswith("/grafana/secrets:/etc/grafana/secrets:ro") for v in grafana["volumes"])


def test_without_a_key_grafana_keeps_its_default(dashboard_9628):
    stack = render_stack(settings_with(None), dashboard_9628)
    paths = {f.path for f in stack.files}
    assert SECRET_KEY_FILE not in paths and CHECK_FILE not in paths
    compose = yaml.safe_load(next(f for f in stack.files if f.path == "docker-compose.yml").content)
    assert "GF_SECURITY_SECRET_KEY__FILE" not in compose["services"]["grafana"]["environment"]


def test_a_missing_key_says_how_to_make_one():
    with pytest.raises(DeployError) as refused:
        build_settings(group_data(), {k: v for k, v in ENVIRON.items() if k != "GRAFANA_KEY"})
    assert "pgmon_grafana_secret_key_env: the environment variable named there is not set" in str(
        refused.value
    )
    assert "openssl rand -base64 32" in str(refused.value)


# ---------------------------------------------------------------- the shell, with a stand-in docker
@pytest.fixture
def shell(tmp_path):
    """Runs a command as the host would, ``docker volume inspect`` answering with tmp_path/volumes/NAME."""
    bin_dir, volumes = tmp_path / "bin", tmp_path / "volumes"
    bin_dir.mkdir()
    volumes.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "volume inspect" ] || exit 2\n'
        "for name; do :; done\n"
        f'[ -d "{volumes}/$name" ] || exit 1\n'
        f'echo "{volumes}/$name"\n'
    )
    docker.chmod(0o755)

    def run(command: str) -> list[str]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    return SimpleNamespace(run=run, volume=volumes / "pgmon_grafana-data", base=tmp_path / "base")


def volume_found(shell) -> GrafanaVolume | None:
    facts = [f for f in HOST_FACTS if f.field == "grafana_volume"]
    return parse_facts(facts, shell.run(grafana_volume_command("/opt/pgmon", "pgmon")))[
        "grafana_volume"
    ]


def test_a_new_volume_records_the_check_before_grafana_writes_there(shell):
    assert volume_found(shell) is None
    shell.volume.mkdir()
    assert volume_found(shell) == GrafanaVolume(has_data=False, check=None)
    (shell.base / "grafana/secrets").mkdir(parents=True)
    (shell.base / CHECK_FILE).write_text(key_check(KEY) + "\n")
    shell.run(record_key_command(str(shell.base), "pgmon"))
    (shell.volume / "grafana.db").write_text("{}")
    assert volume_found(shell) == GrafanaVolume(has_data=True, check=key_check(KEY))
    # A later run with another key's check file leaves the recorded one alone (the refusal came first).
    (shell.base / CHECK_FILE).write_text(key_check("another key, made for another host!") + "\n")
    shell.run(record_key_command(str(shell.base), "pgmon"))
    assert volume_found(shell).check == key_check(KEY)


def test_data_made_with_the_default_key_gets_no_check(shell):
    shell.volume.mkdir()
    (shell.volume / "grafana.db").write_text("{}")
    (shell.base / "grafana/secrets").mkdir(parents=True)
    (shell.base / CHECK_FILE).write_text(key_check(KEY) + "\n")
    shell.run(record_key_command(str(shell.base), "pgmon"))
    assert not (shell.volume / VOLUME_CHECK_FILE).exists()
    assert volume_found(shell) == GrafanaVolume(has_data=True, check=None)


def test_the_check_is_recorded_between_creating_the_volumes_and_starting(monkeypatch):
    monkeypatch.setattr(tasks.stack_containers, "host", HostExecuting())
    (command,) = compose_up._inner(
        "/opt/pgmon",
        "pgmon",
        desired={"grafana": "r1"},
        running={},
        after_file_changes=(),
        hand_over_volumes=True,
        record_grafana_key=True,
    )
    steps = command.split(" && ")
    made = next(i for i, step in enumerate(steps) if "up --no-start" in step)
    recorded = next(i for i, step in enumerate(steps) if VOLUME_CHECK_FILE in step)
    started = next(i for i, step in enumerate(steps) if "up --detach" in step)
    assert made < recorded < started
