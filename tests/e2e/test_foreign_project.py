"""Another Compose project with pgmon's project name on the host: pgmon touches only what it made.

The deploy planned "remove loki (no longer configured)" and its `up --remove-orphans` removed that project's
container; `uninstall.py` with `pgmon_uninstall_delete_data=true` deleted every volume labelled with the project
name. Now a host where the project has containers pgmon did not make is refused before any change, and the
uninstall deletes only pgmon's three data volumes."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from .lab import TESTED_IMAGES, Site
from .test_deploy import assert_ok

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-foreign",
    project="pgmon-foreign",
    prometheus_port=19390,
    alertmanager_port=19393,
    grafana_port=13300,
)
FOREIGN_VOLUME = f"{SITE.project}_loki-data"
PGMON_VOLUMES = [
    f"{SITE.project}_{v}" for v in ("alertmanager-data", "grafana-data", "prometheus-data")
]


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check
    ).stdout.strip()


def volumes() -> list[str]:
    return docker(
        "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={SITE.project}"
    )


@contextmanager
def foreign_project(folder: Path):
    """A Compose project of its own, named like pgmon's: a service loki with a volume (started after the
    deployment's teardown, which removes whatever has the project's name)."""
    (folder / "compose.yaml").write_text(
        f"name: {SITE.project}\n"
        "services:\n"
        "  loki:\n"
        f"    image: {TESTED_IMAGES['alertmanager']}\n"  # any image here: its busybox sleeps
        "    entrypoint: ['/bin/sh', '-c', 'exec sleep 3600']\n"
        "    volumes: ['loki-data:/data']\n"
        "volumes:\n"
        "  loki-data: {}\n"
    )
    compose = ["docker", "compose", "--project-directory", str(folder)]
    subprocess.run([*compose, "up", "--detach"], check=True, capture_output=True)
    try:
        yield compose
    finally:
        subprocess.run([*compose, "down", "--volumes"], capture_output=True)


def test_a_foreign_project_of_the_same_name_is_refused_and_keeps_its_volume(
    new_deployment, tmp_path
):
    with new_deployment("foreign", site=SITE) as deployment, foreign_project(tmp_path) as foreign:
        loki = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={SITE.project}")
        assert loki
        deployment.configure(["shop"])
        for deploy, args in (
            ("deploy.py", ("--dry",)),
            ("deploy.py", ()),
            ("uninstall.py", ("--data", "pgmon_uninstall_delete_data=true")),
        ):
            result = deployment.project.pyinfra(*args, deploy=deploy)
            output = result.stdout + result.stderr
            assert result.returncode != 0, output[-3000:]
            assert f"runs another Compose project named '{SITE.project}'" in output
            assert "loki" in output and "remove loki" not in output
            assert docker("ps", "-q", "--filter", f"id={loki}") == loki  # still running
            assert volumes() == FOREIGN_VOLUME
        # Its containers gone, its volume left: pgmon deploys beside it, and deletes only its own three.
        subprocess.run([*foreign, "down"], check=True, capture_output=True)
        assert_ok(deployment.run())
        assert sorted(volumes().split()) == sorted([FOREIGN_VOLUME, *PGMON_VOLUMES])
        output = assert_ok(
            deployment.project.pyinfra(
                "--data", "pgmon_uninstall_delete_data=true", deploy="uninstall.py"
            )
        )
        assert FOREIGN_VOLUME not in output
        assert volumes() == FOREIGN_VOLUME
