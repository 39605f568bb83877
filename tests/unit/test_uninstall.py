"""Uninstall (and the deploy's container step) on a host where the Compose project's name is not pgmon's alone,
and Compose's fallback command pinned; the end-to-end proof is tests/e2e/test_bare_host.py ("Removing")."""

import subprocess
from types import SimpleNamespace

import pytest

from tasks import stack_containers, uninstall
from tasks.host_state import parse_state
from tasks.settings import DeployError, HostConfig, SettingsInput
from tasks.stack_model import DATA_VOLUMES, compose_command

from .conftest import needs_docker


@needs_docker
def test_the_fallback_compose_command_reads_no_file_from_the_ssh_users_folder(tmp_path):
    """Without pgmon's compose file, ``docker compose -p X down`` ran in the SSH user's folder: a compose.yaml
    there (or in a parent) or a .env naming COMPOSE_FILE decided what it acted on. Real Compose, asked for the
    services it would act on (``config`` needs no engine): none, from no file."""
    home = tmp_path / "home"
    (home / "user").mkdir(parents=True)
    (tmp_path / "elsewhere.yaml").write_text("services:\n  fromenv:\n    image: x\n")
    (home / "compose.yaml").write_text("services:\n  parent:\n    image: x\n")
    (home / "user/.env").write_text(f"COMPOSE_FILE={tmp_path / 'elsewhere.yaml'}\n")
    for cwd, env in (
        (home / "user", {}),
        (home, {"COMPOSE_FILE": str(tmp_path / "elsewhere.yaml")}),
    ):
        result = subprocess.run(
            ["sh", "-c", compose_command(None, "p", "config --services")],
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env},
            capture_output=True,
            text=True,
        )
        assert result.stdout == "" and "no configuration file provided" in result.stderr


def test_a_project_with_containers_pgmon_did_not_make_is_refused(monkeypatch):
    """docker ps of the project prints no revision for a container without pgmon's label."""
    monkeypatch.setattr(stack_containers, "host", SimpleNamespace(name="box"))
    config = HostConfig(config=SettingsInput(project="monitoring"))
    ours = ["container prometheus 0123abcd running", "container grafana 4567abcd exited"]
    stack_containers.refuse_foreign_project(config, parse_state(ours))
    with pytest.raises(
        DeployError, match="box runs another Compose project named 'monitoring'.*loki"
    ):
        stack_containers.refuse_foreign_project(
            config, parse_state([*ours, "container loki  running"])
        )


def test_only_the_volumes_pgmons_compose_file_declares_are_pgmons(monkeypatch):
    listing = [
        "network monitoring-metrics",
        "volume monitoring_grafana-data",
        "volume monitoring_loki-data",
        "volume monitoring_prometheus-data",
    ]
    monkeypatch.setattr(uninstall, "host_output", lambda current_host, command: listing)
    assert uninstall.leftovers(None, "monitoring", DATA_VOLUMES.values()) == (
        ["monitoring-metrics"],
        ["monitoring_grafana-data", "monitoring_prometheus-data"],
    )
    assert uninstall.leftovers(None, "monitoring", ["loki-data"])[1] == ["monitoring_loki-data"]
