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

from pyinfra import host

from .alert_delivery import send_test_alert
from .backup import backup_stack, restore_stack
from .connection_budget import check_connection_budget
from .dashboard import load_dashboard_9628
from .docker_engine import install_docker
from .drill import fire_drill
from .host_state import read_host_state
from .render import render_stack
from .reporting import log_lines
from .settings import HostConfig, Settings, load_channel_settings, load_config, load_settings
from .stack_containers import start_stack, touched_databases
from .stack_files import configure_stack
from .stack_images import pull_stack_images
from .uninstall import uninstall_stack
from .verify_databases import describe_discovered
from .verify_stack import verify_stack

# HostConfig, load_config and load_settings live in settings/load.py; exported here too, as before the
# split (tasks/__init__.py and callers import them from this module).
__all__ = [
    "HostConfig",
    "backup_pgmon",
    "deploy_pgmon",
    "load_config",
    "load_settings",
    "restore_pgmon",
    "run_pgmon_drill",
    "send_pgmon_test_alert",
    "uninstall_pgmon",
]


def deploy_pgmon() -> Settings:
    """Deploy and verify pgmon on the current host; returns the validated settings.

    Every setting and secret is checked before the host is touched (a problem stops the run, naming
    the field and the fix); then one round trip reads the host, Prometheus there (once it runs) says whether
    the exporters fit in each server's connections, and the steps each change only
    what differs: Docker, the images, the files under ``pgmon_base_dir``, the containers, then HTTP
    verification.
    ``--dry`` and ``--diff`` show what would change and touch nothing.
    """
    settings = load_settings(host)
    stack = render_stack(settings, load_dashboard_9628(settings))
    state = read_host_state(host, settings)  # one round trip; each step decides from it
    log_lines(host, describe_discovered(settings, state.discovered))
    log_lines(host, check_connection_budget(settings, host, state.discovered))  # refuses there

    install_docker(settings, state)
    pull_stack_images(settings, state)
    configure_stack(settings, state, stack)
    start_stack(settings, state, stack)
    verify_stack(settings, live=touched_databases(settings, state, stack))
    return settings


def uninstall_pgmon() -> None:
    """Remove pgmon's containers, networks and files from the current host; its data volumes only with
    ``pgmon_uninstall_delete_data`` (tasks/uninstall.py). Reads no secret."""
    uninstall_stack(load_config(host, "uninstall"))


def backup_pgmon() -> None:
    """Copy the current host's Prometheus snapshot, Grafana's and Alertmanager's data into an archive on the
    controller, in ``pgmon_backup_dir`` (tasks/backup.py). Reads no secret."""
    backup_stack(load_config(host, "back up"))


def restore_pgmon() -> None:
    """Fill the current host's pgmon volumes from ``pgmon_restore_from`` (installing Docker if needed); the deploy
    then starts the stack on them (tasks/backup.py). Reads no secret."""
    restore_stack(load_config(host, "restore"))


def send_pgmon_test_alert() -> None:
    """Send a test alert through the deployed Alertmanager to every configured channel (docs/alerts.md).
    Reads the channels' secrets only."""
    send_test_alert(load_channel_settings(host))


def run_pgmon_drill() -> None:
    """Send one drill alert per rule through the deployed Alertmanager, one message per channel and chat,
    report each channel's delivery and resolve them (docs/alerts.md). Reads the channels' secrets only."""
    fire_drill(load_channel_settings(host, "run a fire drill"))
