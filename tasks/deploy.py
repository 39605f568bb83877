"""pgmon's entry point for a pyinfra deploy file: the whole deploy, or the test alert, in one call.

In another project's deploy file, with pgmon installed (``pip install pgmon-<version>-py3-none-any.whl``):

    from pgmon import deploy_pgmon

    deploy_pgmon()

The settings are that project's host data (the same ``pgmon_*`` keys as this repository's
group_data/all.py) and the secrets they name, read from the environment pyinfra runs in. This
repository's own deploy.py is the same call.

``deploy_pgmon`` is a plain function around pgmon's ``@deploy`` steps rather than a ``@deploy`` of its
own, so that every operation keeps its name (``Configure the pgmon stack | Write pgmon configuration``)
wherever it is called from; a caller that wraps it in a ``@deploy`` of its own gets that deploy's
name in front, as pyinfra does for any nested deploy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError
from pyinfra import host

from .alert_delivery import send_test_alert
from .backup import backup_stack, restore_stack
from .dashboard import load_dashboard_9628
from .docker_engine import install_docker
from .host_state import read_host_state
from .render import render_stack
from .settings import (
    DEFAULT_IMAGES,
    SETTING_PREFIX,
    DeployError,
    Settings,
    SettingsInput,
    _format_validation_error,
    _problem_report,
    _unknown_setting_lines,
    build_settings,
)
from .stack_containers import start_stack
from .stack_files import configure_stack
from .uninstall import uninstall_stack
from .verify_stack import verify_stack


def load_settings(current_host) -> Settings:
    """Validate ``current_host``'s pgmon data and read its secrets from this process's environment."""
    return build_settings(current_host.data.dict(), os.environ)


@dataclass(frozen=True)
class HostConfig:
    """The validated settings without any secret: what uninstall, backup and restore need (they read none)."""

    config: SettingsInput

    def image(self, component: str) -> str:
        return self.config.images.get(component, DEFAULT_IMAGES[component])


def load_config(current_host) -> HostConfig:
    """Validate ``current_host``'s pgmon data as the deploy does (unknown keys included), reading no secret."""
    raw = {
        k[len(SETTING_PREFIX) :]: v
        for k, v in current_host.data.dict().items()
        if k.startswith(SETTING_PREFIX)
    }
    problems = _unknown_setting_lines(
        sorted(SETTING_PREFIX + k for k in raw if k not in SettingsInput.model_fields)
    )
    try:
        config = SettingsInput(**{k: v for k, v in raw.items() if k in SettingsInput.model_fields})
    except ValidationError as error:
        raise DeployError(_problem_report(problems + _format_validation_error(error))) from None
    if problems:
        raise DeployError(_problem_report(problems))
    return HostConfig(config)


def deploy_pgmon() -> Settings:
    """Deploy and verify pgmon on the current host; returns the validated settings.

    Every setting and secret is checked before the host is touched (a problem stops the run, naming
    the field and the fix); then one round trip reads the host, and the four steps each change only
    what differs: Docker, the files under ``pgmon_base_dir``, the containers, then HTTP verification.
    ``--dry`` and ``--diff`` show what would change and touch nothing.
    """
    settings = load_settings(host)
    stack = render_stack(settings, load_dashboard_9628(settings))
    state = read_host_state(host, settings)  # one round trip; each step decides from it

    install_docker(settings, state)
    configure_stack(settings, state, stack)
    start_stack(settings, state, stack)
    verify_stack(settings)
    return settings


def uninstall_pgmon() -> None:
    """Remove pgmon's containers, networks and files from the current host; its data volumes only with
    ``pgmon_uninstall_delete_data`` (tasks/uninstall.py). Reads no secret."""
    uninstall_stack(load_config(host))


def backup_pgmon() -> None:
    """Copy the current host's Prometheus snapshot, Grafana's and Alertmanager's data into an archive on the
    controller, in ``pgmon_backup_dir`` (tasks/backup.py). Reads no secret."""
    backup_stack(load_config(host))


def restore_pgmon() -> None:
    """Fill the current host's pgmon volumes from ``pgmon_restore_from`` (installing Docker if needed); the deploy
    then starts the stack on them (tasks/backup.py). Reads no secret."""
    restore_stack(load_config(host))


def send_pgmon_test_alert() -> None:
    """Send a test alert through the deployed Alertmanager to every configured channel (docs/alerts.md)."""
    send_test_alert(load_settings(host))
