"""The demo: pgmon's real stack with a database to watch and a place for its alerts, nothing to configure.

``pyinfra -y inventory.py demo.py`` (README, "Try it: the demo") deploys, to the inventory's host:

- the stack as ``deploy_pgmon`` deploys it, as a project of its own: Compose project ``pgmon-demo``,
  base_dir ``/opt/pgmon-demo``, Grafana on port 3030 of every address (HTTPS, self-signed), Prometheus
  on 127.0.0.1:9190, Alertmanager on 127.0.0.1:9193; scrapes and rules every 5 s, PostgresDown after
  15 s, so that an incident reaches the sink within about a minute;
- the rest, Compose project ``pgmon-demo-extras`` in ``/opt/pgmon-demo-extras``: ``pgmon-demo-postgres``
  (PostgreSQL 17, database ``demo`` with pg_stat_statements, data in the volume
  ``pgmon-demo-extras_postgres-data``), ``pgmon-demo-workload`` (a small steady workload on it) and
  ``pgmon-demo-alert-sink`` (busybox httpd: accepts Discord's webhook and Telegram's sendMessage as they
  answer them, and shows what it received on http://127.0.0.1:3031/ of the host). They join the
  stack's ``pgmon-demo-metrics`` network, where the exporter and Alertmanager reach them by name.

A real deploy (project ``pgmon``, ``/opt/pgmon``, ports 9090, 9093, 3000) shares nothing with it: not a
project, a folder, a port, a lock, a volume nor a network. Its secrets (Grafana's admin password, the
monitoring role's and the workload's passwords) are drawn from the host's /dev/urandom on the first run
and kept in ``/opt/pgmon-demo-extras/secrets`` (root, 0600); they never appear in pyinfra's output.

Of the host data it reads ``pgmon_images``, ``pgmon_dashboard_9628``, ``pgmon_docker_install`` and
``pgmon_take_over_lock`` as the deploy does, ``pgmon_demo_images`` (``{"postgres": ..., "busybox": ...}``,
its own images) and ``pgmon_demo_incident``: ``start`` stops the demo database (PostgresDown fires and
reaches the sink), ``end`` starts it again (the alert resolves). uninstall.py removes all of it.

    config   the fixed settings, the demo's images, its secrets (drawn and read back on the host)
    extras   the extras' compose file, scripts (templates/demo/) and secrets, rendered
    steps    the operations, deploy_demo (demo.py) and uninstall_demo (uninstall.py)
"""

from .steps import deploy_demo, uninstall_demo

__all__ = ["deploy_demo", "uninstall_demo"]
