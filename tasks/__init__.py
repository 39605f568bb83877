"""pgmon's deploy library: each module is one step a reader can name.

    settings         group_data + environment -> one validated Settings
    stack_model      the managed files, owners, services, ports and actions every step speaks of
    render/          Settings -> file contents (pure), one module per component
    dashboard        dashboard 9628 JSON, downloaded once on the controller
    host_state       the host now, in one round trip
    docker_engine    step 1: Docker Engine and Compose v2
    stack_files      step 2: configuration under base_dir
    stack_containers step 3: containers, recreating only what changed
    verify_stack     step 4: HTTP checks with a per-database summary
    http_tunnel      HTTP to the host's loopback through the SSH connection (steps 4 and the test alert)
    alert_delivery   send_test_alert.py: a test alert through the deployed Alertmanager
    silence          silence.py: maintenance silences through the deployed Alertmanager
    reporting        how an operation fails the run with lines the user reads
    grafana_tls      HTTPS for Grafana: the user's certificate or a self-signed one made on the host
    uninstall        uninstall.py: the stack and its files removed, the data volumes kept unless asked
    backup           backup.py / restore.py: the data volumes to the controller and onto another host
    deploy           the entry point: deploy_pgmon() runs the steps above in order (deploy.py)

Installed (a wheel or an sdist), this package is ``pgmon``; in a checkout it is also this folder,
``tasks``. Another project's deploy file calls ``from pgmon import deploy_pgmon; deploy_pgmon()``
(README, "Use pgmon from your own pyinfra project"), or the same steps one by one.
"""

from .dashboard import load_dashboard_9628
from .deploy import (
    backup_pgmon,
    deploy_pgmon,
    load_config,
    load_settings,
    restore_pgmon,
    send_pgmon_test_alert,
    uninstall_pgmon,
)
from .docker_engine import install_docker
from .host_state import read_host_state
from .render import render_stack
from .settings import DeployError, Settings, build_settings
from .silence import manage_pgmon_silences
from .stack_containers import start_stack
from .stack_files import configure_stack
from .verify_stack import verify_stack

__all__ = [
    "backup_pgmon",
    "load_config",
    "restore_pgmon",
    "uninstall_pgmon",
    "DeployError",
    "Settings",
    "build_settings",
    "configure_stack",
    "deploy_pgmon",
    "install_docker",
    "load_dashboard_9628",
    "load_settings",
    "manage_pgmon_silences",
    "read_host_state",
    "render_stack",
    "send_pgmon_test_alert",
    "start_stack",
    "verify_stack",
]
