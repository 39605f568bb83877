"""The demo's parts that need no host: its settings, what it takes from the host's data, its images, the
secrets it reads back, and its extras' files (tests/e2e/test_demo.py runs it whole)."""

import json
import subprocess

import pytest

from tasks.demo import config
from tasks.demo.config import (
    ALERTMANAGER_PORT,
    DEFAULT_DEMO_IMAGES,
    GRAFANA_PORT,
    METRICS_NETWORK,
    PROJECT,
    PROMETHEUS_PORT,
    SECRET_NAMES,
    SINK_PORT,
    SINK_URL,
    WORKLOAD_PASSWORD,
    demo_environ,
    demo_host_data,
    demo_images,
    read_demo_secrets,
)
from tasks.demo.extras import render_extras
from tasks.settings import DeployError, build_settings

from .conftest import needs_docker

SECRETS = {name: f"{index:x}" * 48 for index, name in enumerate(SECRET_NAMES, start=10)}


def test_the_demo_is_a_project_of_its_own_whose_channels_reach_only_the_sink():
    settings = build_settings(demo_host_data({}, "monitor.example.com"), demo_environ(SECRETS))
    cfg = settings.config
    assert (cfg.project, cfg.base_dir) == (PROJECT, "/opt/pgmon-demo")
    assert {GRAFANA_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT, SINK_PORT}.isdisjoint(
        {9090, 9093, 3000}
    )
    assert settings.discord_webhook_url.get_secret_value().startswith(SINK_URL + "/discord/")
    assert cfg.telegram.api_url == SINK_URL + "/telegram"
    assert cfg.grafana_url == f"https://monitor.example.com:{GRAFANA_PORT}"
    assert settings.grafana_admin_password.get_secret_value() == SECRETS["grafana_admin_password"]
    assert [db.server for db in settings.databases] == ["pgmon-demo-postgres:5432"]


def test_only_the_named_keys_of_the_hosts_data_reach_the_demo():
    images = {"grafana": "registry.local/grafana/grafana:12.2.1"}
    host_data = {
        "pgmon_project": "pgmon",
        "pgmon_base_dir": "/opt/pgmon",
        "pgmon_databases": [{"name": "shop"}],
        "pgmon_images": images,
    }
    data = demo_host_data(host_data, "[::1]")
    assert (data["pgmon_project"], data["pgmon_images"]) == (PROJECT, images)
    assert [db["name"] for db in data["pgmon_databases"]] == ["demo"]
    assert "pgmon_grafana_url" not in data  # an address that cannot be written in a link


def test_the_demo_images_are_the_defaults_or_those_given():
    assert demo_images({}) == DEFAULT_DEMO_IMAGES
    mirror = {"postgres": "registry.local/postgres:17.12"}
    assert demo_images({"pgmon_demo_images": mirror})["postgres"] == mirror["postgres"]
    for wrong in ({"grafana": "x"}, {"postgres": ""}, ["postgres"]):
        with pytest.raises(DeployError, match="pgmon_demo_images"):
            demo_images({"pgmon_demo_images": wrong})


def test_secrets_read_back_must_be_the_ones_the_demo_draws(monkeypatch):
    monkeypatch.setattr(config, "host_output", lambda host, command: list(SECRETS.values()))
    assert read_demo_secrets(None) == SECRETS
    edited = [*list(SECRETS.values())[:2], "hunter2"]
    monkeypatch.setattr(config, "host_output", lambda host, command: edited)
    with pytest.raises(DeployError, match="delete that folder") as refused:
        read_demo_secrets(None)
    assert "hunter2" not in str(refused.value)


def test_each_secret_is_only_in_files_no_one_else_reads():
    for f in render_extras(SECRETS, DEFAULT_DEMO_IMAGES).files:
        if f.secret:
            assert f.mode & 0o077 == 0, f.path
        else:
            assert not any(value.encode() in f.content for value in SECRETS.values()), f.path


def test_a_changed_password_recreates_only_the_containers_that_read_it():
    before = render_extras(SECRETS, DEFAULT_DEMO_IMAGES).service_revisions
    after = render_extras(
        {**SECRETS, WORKLOAD_PASSWORD: "f" * 48}, DEFAULT_DEMO_IMAGES
    ).service_revisions
    assert {s for s in before if before[s] != after[s]} == {"postgres", "workload"}


@needs_docker
def test_the_extras_compose_file_joins_the_stacks_network_and_binds_the_sink_to_loopback(tmp_path):
    compose = next(
        f
        for f in render_extras(SECRETS, DEFAULT_DEMO_IMAGES).files
        if f.path == "docker-compose.yml"
    )
    (tmp_path / "docker-compose.yml").write_bytes(compose.content)
    config = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(tmp_path / "docker-compose.yml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stderr
    parsed = json.loads(config.stdout)
    network = parsed["networks"]["metrics"]
    assert (network["name"], network["external"]) == (METRICS_NETWORK, True)
    assert [(p["host_ip"], p["published"]) for p in parsed["services"]["alert-sink"]["ports"]] == [
        ("127.0.0.1", str(SINK_PORT))
    ]
    assert all(service["labels"]["pgmon.demo"] == "true" for service in parsed["services"].values())
