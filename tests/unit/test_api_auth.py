"""Prometheus's and Alertmanager's APIs behind basic auth (tasks/render/api_auth.py): the password, its hash, and
every reader of it taking it from a file. The deployed stack refusing a local account is
tests/e2e/test_secrets.py's."""

import subprocess

import bcrypt
import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tasks.render import render_stack
from tasks.render.api_auth import (
    API_USER,
    answer_body,
    api_credentials,
    api_password,
    api_request_command,
    render_web_config,
)
from tasks.render.compose import compose_services
from tasks.render.grafana import render_grafana_datasource
from tasks.render.prometheus import render_prometheus_config
from tasks.settings import build_settings

from .conftest import ENVIRON, group_data, needs_promtool


@hypothesis_settings(max_examples=15, deadline=None)
# From 8 characters: a shorter one may turn up in 43 random characters by chance, which reveals nothing.
@given(st.text(min_size=8, max_size=80).filter(lambda s: "\x00" not in s))
def test_the_password_is_derived_stable_and_checked_by_its_hash(grafana_password):
    password = api_password(grafana_password)
    assert len(password) == 43 and password.isascii() and grafana_password not in password
    assert api_password(grafana_password) == password
    config = render_web_config(password)
    # The same file at every run: an unchanged password changes nothing on the host.
    assert render_web_config(password) == config
    (hashed,) = yaml.safe_load(config)["basic_auth_users"].values()
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert password.encode() not in config


def test_another_grafana_password_gives_another_api_password():
    assert api_password("one") != api_password("two")


@needs_promtool
def test_prometheus_accepts_the_web_config(tmp_path):
    web = tmp_path / "web.yml"
    web.write_bytes(render_web_config(api_password(ENVIRON["GRAFANA_PW"])))
    checked = subprocess.run(
        ["promtool", "check", "web-config", str(web)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_presents_the_password_from_its_file_to_alertmanager_and_itself(settings):
    config = yaml.safe_load(render_prometheus_config(settings))
    expected = {"username": API_USER, "password_file": "/etc/prometheus/secrets/api_password"}
    assert config["alerting"]["alertmanagers"][0]["basic_auth"] == expected
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["basic_auth"] == jobs["alertmanager"]["basic_auth"] == expected


def test_grafana_reads_the_password_from_its_file(settings):
    (source,) = yaml.safe_load(render_grafana_datasource(settings))["datasources"]
    assert (source["basicAuth"], source["basicAuthUser"]) == (True, API_USER)
    assert source["secureJsonData"] == {
        "basicAuthPassword": "$__file{/etc/grafana/secrets/api_password}"
    }


def test_both_apis_ask_for_it_and_no_command_line_holds_it(settings, dashboard_9628):
    services = compose_services(settings)
    _, password = api_credentials(settings)
    for component in ("prometheus", "alertmanager"):
        service = services[component]
        assert f"--web.config.file=/etc/{component}/secrets/web.yml" in service["command"]
        # wget would need the password on its command line; promtool and amtool read a file.
        check = service["healthcheck"]["test"]
        assert "wget" not in check and f"/etc/{component}/secrets/api_client.yml" in " ".join(check)
    stack = render_stack(settings, dashboard_9628)
    for f in stack.files:
        if password.encode() in f.content:
            assert f.secret and f.mode == 0o400, f.path
    assert password not in api_request_command("p", "prometheus", "POST", "/x")


@pytest.mark.parametrize(
    "printed, expected",
    [
        ("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\na 1\nb 2\n", (200, "a 1\nb 2\n")),
        ("HTTP/1.0 401 Unauthorized\r\n\r\nUnauthorized\n", (401, "Unauthorized\n")),
        ("", (0, "")),
        ("Error: No such container: p-alertmanager", (0, "")),
    ],
)
def test_an_answer_is_read_as_status_and_body(printed, expected):
    assert answer_body(printed) == expected


def test_a_rotated_grafana_password_rotates_the_apis_password(settings):
    rotated = build_settings(group_data(), {**ENVIRON, "GRAFANA_PW": "an0ther'one"})
    assert api_credentials(rotated) != api_credentials(settings)
    assert render_web_config(api_credentials(rotated)[1]) != render_web_config(
        api_credentials(settings)[1]
    )
