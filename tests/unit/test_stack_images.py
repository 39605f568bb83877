"""The images step: what the host has (`docker image ls`), what the stack lacks, and the pull that names the
setting of an image that cannot be had."""

import subprocess

import pytest

from tasks.host_facts import image_name, parse_images
from tasks.host_state import HostState
from tasks.settings import DEFAULT_IMAGES, build_settings
from tasks.stack_images import missing_images, pull_command, pull_images

from .conftest import ENVIRON, HostExecuting, group_data, needs_engine


@pytest.mark.parametrize(
    ("reference", "listed"),
    [
        ("prom/prometheus:v3.5.3", "prom/prometheus:v3.5.3"),
        ("docker.io/prom/prometheus:v3.5.3", "prom/prometheus:v3.5.3"),
        ("docker.io/library/busybox", "busybox:latest"),
        ("library/busybox:1.37", "busybox:1.37"),
        ("registry.local:5000/team/alertmanager", "registry.local:5000/team/alertmanager:latest"),
        ("prom/prometheus:v3.5.3@sha256:ab12", "prom/prometheus@sha256:ab12"),
    ],
)
def test_a_reference_is_named_as_docker_image_ls_lists_it(reference, listed):
    assert image_name(reference) == listed


def test_only_the_images_the_host_lacks_are_pulled():
    settings = build_settings(
        group_data(pgmon_images={"alertmanager": "docker.io/prom/alertmanager:v0.33.1"}), ENVIRON
    )
    listed = [
        (
            "image",
            f"{image_name(settings.image(c))} {image_name(settings.image(c)).split(':')[0]}@<none>",
        )
        for c in DEFAULT_IMAGES
    ]
    everything = HostState(None, None, True, images=parse_images(listed))
    assert missing_images(settings, everything) == {}
    without_grafana = HostState(
        None, None, True, images=parse_images([line for line in listed if "grafana" not in line[1]])
    )
    assert missing_images(settings, without_grafana) == {"grafana": settings.image("grafana")}
    assert set(missing_images(settings, HostState(None, None, False))) == set(DEFAULT_IMAGES)


def test_nothing_is_run_when_every_image_is_there(monkeypatch):
    monkeypatch.setattr("tasks.stack_images.host", HostExecuting())
    assert list(pull_images._inner({})) == []


@needs_engine
def test_an_image_that_cannot_be_pulled_names_its_setting_and_stops_there(tmp_path):
    # A registry on a closed loopback port: the pull fails here, and nothing leaves this machine.
    missing = {
        "alertmanager": "127.0.0.1:1/pgmon-test/alertmanager:v0.404",
        "grafana": "127.0.0.1:1/pgmon-test/grafana:never-reached",
    }
    result = subprocess.run(
        ["sh", "-c", pull_command(missing)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    first, *reason = result.stderr.splitlines()
    assert first == (
        "pgmon_images.alertmanager: 127.0.0.1:1/pgmon-test/alertmanager:v0.404 cannot be pulled, and nothing "
        "was changed. Set a tag that exists, or make the registry reachable from the host (docs/versions.md)"
    )
    assert "127.0.0.1:1" in " ".join(reason)  # Docker's own reason follows
    assert "grafana" not in result.stderr  # the first failure ends it
