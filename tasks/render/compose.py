"""docker-compose.yml: every service of the stack, each labelled with a revision of its definition."""

from __future__ import annotations

import hashlib
import json

from ..grafana_key import SECRET_KEY_FILE
from ..settings import Settings
from ..settings.cluster import peer_timeout_ms
from ..settings.thresholds import PROMETHEUS_RETENTION_DAYS
from ..stack_model import (
    ALERTMANAGER_GOSSIP_PORT,
    ALERTMANAGER_PORT,
    ALERTMANAGER_UID,
    DATA_VOLUMES,
    DISCOVERED_DIR,
    DISCOVERED_MOUNT,
    EXPORTER_PORT,
    EXPORTER_UID,
    GRAFANA_PORT,
    GRAFANA_TLS_DIR,
    GRAFANA_TLS_MOUNT,
    NODE_EXPORTER_PORT,
    NODE_EXPORTER_SERVICE,
    NODE_EXPORTER_UID,
    PROMETHEUS_PORT,
    PROMETHEUS_UID,
    container_name,
    exporter_service,
    grafana_certificate_files,
    light_service,
    tenants_service,
    yaml_bytes,
)
from .alertmanager import alertmanager_entrypoint
from .api_auth import CLIENT_CONFIG_FILE, WEB_CONFIG_FILE, amtool_command, container_path
from .discovery import AUTH_CONFIG_PATH, discovery_entrypoint
from .exporters import (
    EXPORTER_CONFIG_DIR,
    EXPORTER_PASSFILE,
    EXPORTER_QUERIES,
    LIGHT_QUERIES,
    data_source_uri,
    exporter_flags,
    server_primaries,
)


def _escape_compose(value):
    # Compose interpolates "$VAR" in every string; "$$" is a literal dollar.
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_compose(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_compose(v) for k, v in value.items()}
    return value


def _healthcheck(url: str) -> dict:
    # Inside the container, on its loopback: the certificate names the host, not 127.0.0.1, and nothing secret is sent.
    insecure = ["--no-check-certificate"] if url.startswith("https:") else []
    return _healthcheck_running(["wget", "-q", *insecure, "-O", "/dev/null", url])


def _healthcheck_running(command: list[str]) -> dict:
    return {
        "test": ["CMD", *command],
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "20s",
    }


def _cluster_flags(settings: Settings) -> list[str]:
    cluster = settings.config.cluster
    if cluster is None:
        return ["--cluster.listen-address="]  # a single instance: no gossip port
    return [
        f"--cluster.listen-address=0.0.0.0:{ALERTMANAGER_GOSSIP_PORT}",
        # The address the other members reach this one at, not the container's own.
        f"--cluster.advertise-address={cluster.address}:{cluster.gossip_port}",
        # Gossip from an Alertmanager of another cluster that reaches this one is refused.
        f"--cluster.label={cluster.name}",
        f"--cluster.peer-timeout={peer_timeout_ms(cluster, settings.config.flush_step_ms)}ms",
        # --cluster.peer: the entrypoint adds one per line of CLUSTER_PEERS_FILE.
    ]


def _cluster_ports(settings: Settings) -> list[str]:
    """An HA group's Alertmanager on the member's address: its API for the other members' Prometheus, its
    gossip (TCP and UDP); tasks/isolation.py admits only the members there."""
    cfg = settings.config
    if cfg.cluster is None:
        return []
    address, gossip = cfg.cluster.address, cfg.cluster.gossip_port
    return [
        f"{address}:{cfg.alertmanager_port}:{ALERTMANAGER_PORT}",
        f"{address}:{gossip}:{ALERTMANAGER_GOSSIP_PORT}/tcp",
        f"{address}:{gossip}:{ALERTMANAGER_GOSSIP_PORT}/udp",
    ]


def grafana_scheme(settings: Settings) -> str:
    return "https" if settings.config.grafana_https else "http"


def compose_services(settings: Settings) -> dict[str, dict]:
    """Every service of the stack, each labelled with a revision that changes with its definition."""
    cfg = settings.config
    project = cfg.project

    def container(service: str) -> str:
        return container_name(project, service)

    def mount(directory: str, target: str) -> str:
        # Absolute: a moved base_dir changes every definition, so each container is recreated on the new files.
        return f"{cfg.base_dir}/{directory}:{target}:ro"

    host_gateway = ["host.docker.internal:host-gateway"]
    services: dict[str, dict] = {
        "prometheus": {
            "image": settings.image("prometheus"),
            "container_name": container("prometheus"),
            "restart": "unless-stopped",
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION_DAYS}d",
                # The snapshot API, for backup.py. It answers where the rest of Prometheus does: the host's loopback
                # and the ui network, Grafana's (docs/security.md, "Network exposure").
                "--web.enable-admin-api",
                # Basic auth on every path: any local account reaches the port (api_auth.py).
                f"--web.config.file={container_path('prometheus', WEB_CONFIG_FILE)}",
            ],
            "ports": [f"127.0.0.1:{cfg.prometheus_port}:{PROMETHEUS_PORT}"],
            "user": f"{PROMETHEUS_UID}:{PROMETHEUS_UID}",
            "volumes": [
                mount("prometheus", "/etc/prometheus"),
                f"{DATA_VOLUMES['prometheus']}:/prometheus",
            ],
            "networks": ["metrics", "ui"],
            # promtool, not wget: it reads the password from a file, where wget would show it in /proc.
            "healthcheck": _healthcheck_running(
                [
                    "promtool",
                    "check",
                    "ready",
                    f"--url=http://127.0.0.1:{PROMETHEUS_PORT}",
                    f"--http.config.file={container_path('prometheus', CLIENT_CONFIG_FILE)}",
                ]
            ),
        },
        "alertmanager": {
            "image": settings.image("alertmanager"),
            "container_name": container("alertmanager"),
            "restart": "unless-stopped",
            # Keeps the Telegram bot token out of its log; reads an HA group's peers.
            "entrypoint": alertmanager_entrypoint(read_peers=cfg.cluster is not None),
            "command": [
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
                # Notification counters per receiver: the test alert and the drill read their own (drill.py).
                "--enable-feature=receiver-name-in-metrics",
                *_cluster_flags(settings),
                f"--web.config.file={container_path('alertmanager', WEB_CONFIG_FILE)}",
            ],
            "ports": [
                f"127.0.0.1:{cfg.alertmanager_port}:{ALERTMANAGER_PORT}",
                *_cluster_ports(settings),
            ],
            "user": f"{ALERTMANAGER_UID}:{ALERTMANAGER_UID}",
            "volumes": [
                mount("alertmanager", "/etc/alertmanager"),
                f"{DATA_VOLUMES['alertmanager']}:/alertmanager",
            ],
            "networks": ["metrics"],
            "extra_hosts": host_gateway,
            "healthcheck": _healthcheck_running([*amtool_command(), "cluster", "show"]),
        },
        "grafana": {
            "image": settings.image("grafana"),
            "container_name": container("grafana"),
            "restart": "unless-stopped",
            "environment": {
                "GF_SECURITY_ADMIN_USER": cfg.grafana_admin_user,
                "GF_SECURITY_ADMIN_PASSWORD__FILE": "/etc/grafana/secrets/admin_password",
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_AUTH_ANONYMOUS_ENABLED": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
                "GF_NEWS_NEWS_FEED_ENABLED": "false",
                # Nothing leaves the host on Grafana's own initiative: Grafana 12 installs "preinstalled"
                # plugins from grafana.com at every start, fetches plugin signing keys and Gravatar
                # images, and offers snapshot publishing to snapshots.raintank.io.
                "GF_PLUGINS_PREINSTALL_DISABLED": "true",
                "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED": "true",
                "GF_PLUGINS_PLUGIN_ADMIN_ENABLED": "false",
                "GF_SECURITY_DISABLE_GRAVATAR": "true",
                "GF_SNAPSHOTS_EXTERNAL_ENABLED": "false",
            },
            "ports": [f"{cfg.grafana_bind_address}:{cfg.grafana_port}:{GRAFANA_PORT}"],
            "volumes": [
                f"{DATA_VOLUMES['grafana']}:/var/lib/grafana",
                mount("grafana/provisioning", "/etc/grafana/provisioning"),
                mount("grafana/dashboards", "/etc/grafana/dashboards"),
                mount("grafana/secrets", "/etc/grafana/secrets"),
            ],
            "networks": ["ui"],
            "depends_on": ["prometheus"],
            "healthcheck": _healthcheck(
                f"{grafana_scheme(settings)}://127.0.0.1:{GRAFANA_PORT}/api/health"
            ),
        },
    }
    if settings.grafana_secret_key is not None:
        # The image's run.sh reads the file into GF_SECURITY_SECRET_KEY (grafana/secrets is /etc/grafana/secrets).
        services["grafana"]["environment"]["GF_SECURITY_SECRET_KEY__FILE"] = (
            f"/etc/{SECRET_KEY_FILE}"
        )
    if cfg.grafana_https:
        # Grafana's own settings for TLS (tasks/grafana_tls.py): the user's certificate, or the self-signed one.
        cert, key = grafana_certificate_files(settings.grafana_tls_certificate is not None)
        services["grafana"]["environment"].update(
            {
                "GF_SERVER_PROTOCOL": "https",
                "GF_SERVER_CERT_FILE": f"{GRAFANA_TLS_MOUNT}/{cert}",
                "GF_SERVER_CERT_KEY": f"{GRAFANA_TLS_MOUNT}/{key}",
                # Grafana's default is false: an on-path attacker could steer the browser to http:// and
                # read the session. SameSite stays lax, not strict: the alerts' dashboard links are
                # opened from Discord and Telegram, and strict would show the login page every time.
                "GF_SECURITY_COOKIE_SECURE": "true",
                "GF_SECURITY_COOKIE_SAMESITE": "lax",
            }
        )
        services["grafana"]["volumes"].append(mount(GRAFANA_TLS_DIR, GRAFANA_TLS_MOUNT))
    services[NODE_EXPORTER_SERVICE] = {
        "image": settings.image("node_exporter"),
        "container_name": container(NODE_EXPORTER_SERVICE),
        "restart": "unless-stopped",
        # The host's CPU, memory and file systems: its processes and root file system, read-only.
        "command": [
            "--path.rootfs=/host",
            f"--web.listen-address=:{NODE_EXPORTER_PORT}",
            "--log.level=warn",
        ],
        "pid": "host",
        "volumes": ["/:/host:ro"],
        # Not another container's uid: with the host's / mounted, it could read that one's secret files.
        "user": f"{NODE_EXPORTER_UID}:{NODE_EXPORTER_UID}",
        "networks": ["metrics"],
        "healthcheck": _healthcheck(f"http://127.0.0.1:{NODE_EXPORTER_PORT}/"),
    }
    if cfg.servers:
        # The lists of databases found, read as file discovery (render/discovery.py).
        services["prometheus"]["volumes"].append(
            f"{cfg.base_dir}/{DISCOVERED_DIR}:{DISCOVERED_MOUNT}:ro"
        )

    def exporter(service: str, command: list[str], folder: str) -> dict:
        return {
            "image": settings.image("postgres_exporter"),
            "container_name": container(service),
            "restart": "unless-stopped",
            "command": command,
            "volumes": [mount(folder, EXPORTER_CONFIG_DIR)],
            "user": f"{EXPORTER_UID}:{EXPORTER_UID}",
            "networks": ["metrics"],
            "extra_hosts": host_gateway,
            "healthcheck": _healthcheck(f"http://127.0.0.1:{EXPORTER_PORT}/"),
        }

    version = settings.version("postgres_exporter")
    primaries = server_primaries(settings)
    for db in settings.databases:
        flags = exporter_flags(
            db.name in primaries, db.pg_stat_statements, db.table_metrics, version
        )
        services[exporter_service(db.name)] = exporter(
            exporter_service(db.name), flags, f"exporters/{db.name}"
        )
        services[exporter_service(db.name)]["environment"] = {
            "DATA_SOURCE_URI": data_source_uri(db),
            # libpq's own variables, which lib/pq reads: any name or password PostgreSQL accepts, and
            # none of them in a DSN the exporter could fail to parse and then log.
            "PGDATABASE": db.dbname,
            "PGUSER": db.user,
            # A file, never the URL: any password works and none shows in `docker inspect`.
            "PGPASSFILE": EXPORTER_PASSFILE,
        }
    for server in cfg.servers:
        # The server's own exporter also writes the list of its databases (render/discovery.py) ...
        own = services[exporter_service(server.name)]
        own["entrypoint"] = discovery_entrypoint(server, cfg.scrape_interval_seconds)
        own["volumes"].append(f"{cfg.base_dir}/{DISCOVERED_DIR}:{DISCOVERED_MOUNT}")
        # ... and one more probes each of them: per-database collectors only, the login in its own file.
        probers = {tenants_service(server.name): server.table_metrics}
        if server.light:
            probers[light_service(server.name)] = False  # the same login, no per-table collectors
        for service, tables in probers.items():
            queries = EXPORTER_QUERIES if tables else f"{EXPORTER_CONFIG_DIR}/{LIGHT_QUERIES}"
            flags = exporter_flags(False, False, tables, version, queries)
            services[service] = exporter(
                service, [*flags, f"--config.file={AUTH_CONFIG_PATH}"], f"tenants/{server.name}"
            )
    for service in services.values():
        digest = hashlib.sha256(json.dumps(service, sort_keys=True).encode()).hexdigest()
        service["labels"] = {"pgmon.revision": digest[:16]}
    return services


def render_compose(settings: Settings, services: dict[str, dict]) -> bytes:
    project = settings.config.project
    document = {
        "name": project,
        "services": services,
        "networks": {
            # Exporters and Alertmanager talk to Prometheus only; Grafana sees Prometheus only.
            "metrics": {"name": f"{project}-metrics"},
            "ui": {"name": f"{project}-ui"},
        },
        "volumes": {volume: {} for volume in DATA_VOLUMES.values()},
    }
    return yaml_bytes(_escape_compose(document))
