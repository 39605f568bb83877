"""Pure render functions: settings in, file contents out. No pyinfra, no I/O on the host.

Structured configs (compose, prometheus.yml, alertmanager.yml, targets) are
built as Python data and serialised, so no database name, label or password
can break their syntax. The rule catalogue is a Jinja template whose values all
pass through ``tojson`` for the same reason.

Each module renders one component; this one lays them out under base_dir with the owners and modes
the containers need.
"""

from __future__ import annotations

import json

from ..grafana_key import CHECK_FILE, SECRET_KEY_FILE, key_check
from ..grafana_tls import TLS_DIR, certificate_files
from ..settings import Settings
from ..stack_model import (
    ALERTMANAGER_UID,
    DISCOVERED_DIR,
    EXPORTER_UID,
    GRAFANA_GID,
    GRAFANA_UID,
    MANIFEST,
    PROMETHEUS_UID,
    RELOAD_ALERTMANAGER,
    RELOAD_PROMETHEUS,
    RESET_GRAFANA_PASSWORD,
    RESTART_GRAFANA,
    TEMPLATES_DIR,
    ConfigCheck,
    ManagedDir,
    ManagedFile,
    StackFiles,
    exporter_service,
    light_service,
    restart_action,
    tenants_service,
)
from .alertmanager import (
    CLUSTER_PEERS_FILE,
    render_alertmanager_config,
    render_cluster_peers,
    telegram_chat_file,
)
from .api_auth import (
    CLIENT_CONFIG_FILE,
    PASSWORD_FILE,
    WEB_CONFIG_FILE,
    api_credentials,
    container_path,
    render_client_config,
    render_web_config,
)
from .compose import compose_services, render_compose
from .discovery import DISCOVER_SCRIPT, discovery_query, render_auth_config
from .exporters import LIGHT_QUERIES, render_exporter_queries, render_pgpass, server_primaries
from .grafana import (
    DASHBOARD_9628_UID,
    DATASOURCE_UID,
    bind_dashboard_inputs,
    pgmon_dashboard_files,
    render_grafana_dashboard_provider,
    render_grafana_datasource,
)
from .prometheus import (
    render_postgres_targets,
    render_prometheus_config,
    render_recording_rules,
    render_rules,
)
from .stores import store_secret_file


def render_stack(settings: Settings, dashboard_9628: dict) -> StackFiles:
    """Every directory and file under base_dir, with owners and modes the containers need.

    Example:

    .. code:: python

        stack = render_stack(settings, json.load(open("9628.json")))
        [f.path for f in stack.files]  # ["docker-compose.yml", "prometheus/prometheus.yml", ...]
    """
    services = compose_services(settings)
    dashboard = bind_dashboard_inputs(
        dashboard_9628, {"DS_PROMETHEUS": DATASOURCE_UID}, DASHBOARD_9628_UID
    )
    directories = [
        ManagedDir("."),
        ManagedDir("prometheus"),
        ManagedDir("prometheus/rules"),
        ManagedDir("prometheus/targets"),
        ManagedDir("prometheus/secrets", 0o100, PROMETHEUS_UID, PROMETHEUS_UID),
        ManagedDir("alertmanager"),
        ManagedDir("alertmanager/templates"),
        # Secret folders: their owner reaches each file by its name and lists none (0100).
        ManagedDir("alertmanager/secrets", 0o100, ALERTMANAGER_UID, ALERTMANAGER_UID),
        ManagedDir("exporters"),
        ManagedDir("grafana"),
        ManagedDir("grafana/provisioning"),
        ManagedDir("grafana/provisioning/datasources"),
        ManagedDir("grafana/provisioning/dashboards"),
        ManagedDir("grafana/dashboards"),
        ManagedDir("grafana/secrets", 0o100, GRAFANA_UID, GRAFANA_GID),
    ]
    secret = dict(mode=0o400, uid=ALERTMANAGER_UID, gid=ALERTMANAGER_UID, secret=True)
    # Alertmanager reads its secret files when it loads its configuration.
    alertmanager_secret = dict(secret, on_change=(RELOAD_ALERTMANAGER,))
    grafana_secret = dict(mode=0o400, uid=GRAFANA_UID, gid=GRAFANA_GID, secret=True)
    exporter = dict(uid=EXPORTER_UID, gid=EXPORTER_UID)
    _, password = api_credentials(settings)
    files = [
        ManagedFile("docker-compose.yml", render_compose(settings, services)),
        ManagedFile(
            "prometheus/prometheus.yml",
            render_prometheus_config(settings),
            on_change=(RELOAD_PROMETHEUS,),
        ),
        ManagedFile(
            "prometheus/rules/pgmon.rules.yml",
            render_rules(settings),
            on_change=(RELOAD_PROMETHEUS,),
        ),
        ManagedFile(
            "prometheus/rules/pgmon.recording.yml",
            render_recording_rules(settings),
            on_change=(RELOAD_PROMETHEUS,),
        ),
        ManagedFile("prometheus/targets/postgres.json", render_postgres_targets(settings)),
        # Names its secrets' files (alertmanager/secrets/) and holds none: world-readable like the rest.
        ManagedFile(
            "alertmanager/alertmanager.yml",
            render_alertmanager_config(settings),
            on_change=(RELOAD_ALERTMANAGER,),
        ),
        ManagedFile(
            "alertmanager/templates/pgmon.tmpl",
            (TEMPLATES_DIR / "alertmanager" / "pgmon.tmpl").read_bytes(),
            on_change=(RELOAD_ALERTMANAGER,),
        ),
        ManagedFile(
            "grafana/provisioning/datasources/pgmon.yml",
            render_grafana_datasource(settings),
            on_change=(RESTART_GRAFANA,),
        ),
        ManagedFile(
            "grafana/provisioning/dashboards/pgmon.yml",
            render_grafana_dashboard_provider(),
            on_change=(RESTART_GRAFANA,),
        ),
        ManagedFile(
            "grafana/dashboards/postgresql-9628.json",
            (json.dumps(dashboard, indent=1, sort_keys=True) + "\n").encode(),
        ),
        # Grafana rescans the folder: a changed file updates its dashboard in place, no restart.
        *(
            ManagedFile(f"grafana/dashboards/{name}", content)
            for name, content in pgmon_dashboard_files().items()
        ),
        ManagedFile(
            "grafana/secrets/admin_password",
            settings.grafana_admin_password.get_secret_value().encode(),
            on_change=(RESET_GRAFANA_PASSWORD,),
            **grafana_secret,
        ),
        # Its data source's basic auth reads this file when Grafana provisions it, at start.
        ManagedFile(
            f"grafana/secrets/{PASSWORD_FILE}",
            password.encode(),
            on_change=(RESTART_GRAFANA,),
            **grafana_secret,
        ),
    ]
    # Prometheus and Alertmanager read these at every request: a new password needs no reload.
    for component, uid in (("prometheus", PROMETHEUS_UID), ("alertmanager", ALERTMANAGER_UID)):
        owned = dict(mode=0o400, uid=uid, gid=uid, secret=True)
        files += [
            ManagedFile(f"{component}/secrets/{PASSWORD_FILE}", password.encode(), **owned),
            ManagedFile(
                f"{component}/secrets/{WEB_CONFIG_FILE}", render_web_config(password), **owned
            ),
            ManagedFile(
                f"{component}/secrets/{CLIENT_CONFIG_FILE}",
                render_client_config(container_path(component, PASSWORD_FILE)),
                **owned,
            ),
        ]
    if settings.config.grafana_https:
        directories.append(ManagedDir(TLS_DIR, 0o500, GRAFANA_UID, GRAFANA_GID))
        if settings.grafana_tls_certificate is not None:
            # The user's certificate; without one, Grafana's self-signed pair is made on the host (grafana_tls).
            cert, key = certificate_files(True)
            tls = dict(uid=GRAFANA_UID, gid=GRAFANA_GID, on_change=(RESTART_GRAFANA,))
            files.append(
                ManagedFile(
                    f"{TLS_DIR}/{cert}", settings.grafana_tls_certificate, mode=0o444, **tls
                )
            )
            files.append(
                ManagedFile(
                    f"{TLS_DIR}/{key}",
                    settings.grafana_tls_key.get_secret_value().encode(),
                    mode=0o400,
                    secret=True,
                    **tls,
                )
            )
    if settings.grafana_secret_key is not None:
        key = settings.grafana_secret_key.get_secret_value()
        files += [
            ManagedFile(
                SECRET_KEY_FILE, key.encode(), on_change=(RESTART_GRAFANA,), **grafana_secret
            ),
            # Root's only: copied into Grafana's volume while it is new (grafana_key.record_key_command).
            ManagedFile(CHECK_FILE, (key_check(key) + "\n").encode(), mode=0o400, secret=True),
        ]
    # A store's password or token: Prometheus reads it at each request; Grafana when it provisions the data source.
    for store in settings.config.remote_write:
        credential = settings.remote_write_secrets.get(store.name)
        if credential is None:
            continue
        files.append(
            ManagedFile(
                f"prometheus/secrets/{store_secret_file(store)}",
                credential.get_secret_value().encode(),
                mode=0o400,
                uid=PROMETHEUS_UID,
                gid=PROMETHEUS_UID,
                secret=True,
            )
        )
        if store.query_url is not None:
            files.append(
                ManagedFile(
                    f"grafana/secrets/{store_secret_file(store)}",
                    credential.get_secret_value().encode(),
                    on_change=(RESTART_GRAFANA,),
                    **grafana_secret,
                )
            )
    if settings.discord_webhook_url is not None:
        files.append(
            ManagedFile(
                "alertmanager/secrets/discord_webhook_url",
                settings.discord_webhook_url.get_secret_value().encode(),
                **secret,
            )
        )
    if settings.telegram_bot_token is not None:
        files.append(
            ManagedFile(
                "alertmanager/secrets/telegram_bot_token",
                settings.telegram_bot_token.get_secret_value().encode(),
                **alertmanager_secret,
            )
        )
        files += [
            ManagedFile(
                f"alertmanager/secrets/{telegram_chat_file(index)}",
                str(chat_id).encode(),
                **alertmanager_secret,
            )
            for index, chat_id in enumerate(settings.telegram_chat_ids)
        ]
    if settings.watchdog_url is not None:
        files.append(
            ManagedFile(
                "alertmanager/secrets/watchdog_url",
                settings.watchdog_url.get_secret_value().encode(),
                **secret,
            )
        )
    if settings.config.cluster is not None:
        # Read when Alertmanager starts: a change leaves the running one alone (alertmanager.py).
        files.append(ManagedFile(CLUSTER_PEERS_FILE, render_cluster_peers(settings)))
    # The first exporter of each server also reads the server-wide views' extra queries (exporters.py); a
    # discovered server's own lists its databases (discovery.py).
    primaries = server_primaries(settings)
    listings = {
        server.name: {"pgmon_discovery": discovery_query(settings, server)}
        for server in settings.config.servers
    }
    for db in settings.databases:
        directories.append(ManagedDir(f"exporters/{db.name}", 0o100, **exporter))
        files.append(
            ManagedFile(
                f"exporters/{db.name}/pgpass",
                render_pgpass(settings.database_passwords[db.name].get_secret_value()),
                mode=0o400,
                secret=True,
                on_change=(restart_action(exporter_service(db.name)),),
                **exporter,
            )
        )
        # In the exporter's own folder: a single-file mount would keep showing a replaced file's old inode.
        files.append(
            ManagedFile(
                f"exporters/{db.name}/queries.yaml",
                render_exporter_queries(
                    db.name in primaries, listings.get(db.name), db.table_metrics
                ),
                mode=0o400,
                on_change=(restart_action(exporter_service(db.name)),),
                **exporter,
            )
        )
    if settings.config.servers:
        # Written by the server exporters' discover.sh (their uid), read by Prometheus.
        directories += [ManagedDir(DISCOVERED_DIR, 0o755, **exporter), ManagedDir("tenants")]
    for server in settings.config.servers:
        own = f"exporters/{server.name}"
        restart_own = (restart_action(exporter_service(server.name)),)
        files.append(
            ManagedFile(
                f"{own}/discover.sh",
                DISCOVER_SCRIPT.read_bytes(),
                mode=0o400,
                on_change=restart_own,
                **exporter,
            )
        )
        folder = f"tenants/{server.name}"
        restart = tuple(
            restart_action(service)
            for service in (tenants_service(server.name), light_service(server.name))
            if service in services
        )
        directories.append(ManagedDir(folder, 0o100, **exporter))
        files += [
            ManagedFile(
                f"{folder}/auth.yml",
                render_auth_config(
                    server, settings.database_passwords[server.name].get_secret_value()
                ),
                mode=0o400,
                secret=True,
                on_change=restart,
                **exporter,
            ),
            ManagedFile(
                f"{folder}/queries.yaml",
                render_exporter_queries(False, tables=server.table_metrics),
                mode=0o400,
                on_change=restart,
                **exporter,
            ),
        ]
        if server.light:
            files.append(
                ManagedFile(
                    f"{folder}/{LIGHT_QUERIES}",
                    render_exporter_queries(False, tables=False),
                    mode=0o400,
                    on_change=restart,
                    **exporter,
                )
            )
    paths = sorted({d.path for d in directories} | {f.path for f in files} | {MANIFEST})
    files.append(ManagedFile(MANIFEST, ("\n".join(paths) + "\n").encode()))
    revisions = {name: svc["labels"]["pgmon.revision"] for name, svc in services.items()}
    # Checked by the images that will read them, so a file the component would reject never replaces a good one.
    checks = (
        ConfigCheck(
            "prometheus",
            settings.image("prometheus"),
            "/etc/prometheus",
            ("/bin/promtool", "check", "config", "/etc/prometheus/prometheus.yml"),
            PROMETHEUS_UID,
        ),
        ConfigCheck(
            "alertmanager",
            settings.image("alertmanager"),
            "/etc/alertmanager",
            ("/bin/amtool", "check-config", "/etc/alertmanager/alertmanager.yml"),
            ALERTMANAGER_UID,
        ),
    )
    return StackFiles(tuple(directories), tuple(files), revisions, checks)
