"""pgmon's deploy library: each module is one step a reader can name.

    settings/        group_data + environment -> one validated Settings (a package, by concern)
    ssh_target       PGMON_HOST (user@host:port) -> the inventory's host and SSH data (inventory.py)
    stack_model      the managed files, owners, services, ports and actions every step speaks of
    render/          Settings -> file contents (pure), one module per component
    dashboard        dashboard 9628 JSON, downloaded once on the controller
    host_facts       each fact of the host's state: its shell command beside its parser
    host_state       the host now, in one round trip
    host_lock        one run at a time per host: the lock claimed before the first change
    docker_engine    step 1: Docker Engine and Compose v2
    stack_images     before step 2: the images the stack runs, pulled if the host lacks them
    stack_files      step 2: configuration under base_dir
    stack_containers step 3: containers, recreating only what changed
    verify_stack     step 4: HTTP checks with a per-database summary
    http_tunnel      HTTP to the host's loopback through the SSH connection (steps 4 and the test alert)
    pyinfra_internals the one door to what pgmon uses of pyinfra beyond its public API, and why
    isolation        the firewall rule that keeps neighbours from routing to the containers
    alert_delivery   send_test_alert.py: a test alert through the deployed Alertmanager
    drill            drill.py: one drill alert per rule, one message per channel, delivery timed
    silence          silence.py: maintenance silences through the deployed Alertmanager
    reporting        how an operation fails the run with lines the user reads
    grafana_tls      HTTPS for Grafana: the user's certificate or a self-signed one made on the host
    uninstall        uninstall.py: the stack and its files removed, the data volumes kept unless asked
    backup           backup.py / restore.py: the data volumes to the controller and onto another host
    deploy           the entry point: deploy_pgmon() runs the steps above in order (deploy.py)
    demo/            demo.py: the stack with a demo database, workload and alert sink, a project of its own

Installed (a wheel or an sdist), this package is ``pgmon``; in a checkout it is also this folder,
``tasks``. Another project's deploy file calls ``from pgmon import deploy_pgmon; deploy_pgmon()``
(docs/library.md), or the same steps one by one.
"""

from .dashboard import load_dashboard_9628
from .demo import deploy_demo, uninstall_demo
from .deploy import (
    backup_pgmon,
    deploy_pgmon,
    load_config,
    load_settings,
    restore_pgmon,
    run_pgmon_drill,
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
    "deploy_demo",
    "deploy_pgmon",
    "uninstall_demo",
    "install_docker",
    "load_dashboard_9628",
    "load_settings",
    "manage_pgmon_silences",
    "read_host_state",
    "render_stack",
    "run_pgmon_drill",
    "send_pgmon_test_alert",
    "start_stack",
    "verify_stack",
]
