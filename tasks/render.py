"""Pure render functions: settings in, file contents out. No pyinfra, no I/O on the host.

Structured configs (compose, prometheus.yml, alertmanager.yml, targets) are
built as Python data and serialised, so no database name, label or password
can break their syntax. The rule catalogue is a Jinja template whose values all
pass through ``tojson`` for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import jinja2
import yaml

from .settings import (
    MIN_SCRAPES_PER_WINDOW,
    SERVER_THRESHOLDS,
    AlertThresholds,
    Database,
    Settings,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
DASHBOARDS_DIR = PROJECT_ROOT / "files" / "grafana" / "dashboards"

ROOT = 0
NOBODY = 65534  # the user of the prom/* and postgres-exporter images
GRAFANA_UID, GRAFANA_GID = 472, 0  # the grafana/grafana image runs as 472:0

DATASOURCE_UID = "pgmon-prometheus"
DASHBOARD_9628_UID = "pgmon-postgresql-9628"
EXPORTER_PORT = 9187

# Collectors that read server-wide views. Only one exporter per PostgreSQL
# server runs them, so several databases on one server do not multiply these
# series; the others keep the per-database (table and index) collectors.
SERVER_WIDE_COLLECTORS = (
    "database",
    "locks",
    "replication",
    "replication_slot",
    "roles",
    "stat_bgwriter",
    "stat_database",
    "wal",
)
# Server-wide collectors postgres_exporter leaves off, turned on in that same one exporter: the server's
# start time and transaction ID age per database (for the alert rules), and PostgreSQL 17's checkpoint
# counters (for dashboard 9628; the collector skips older servers without querying them).
SERVER_WIDE_OPT_IN_COLLECTORS = ("postmaster", "database_wraparound", "stat_checkpointer")
NODE_EXPORTER_PORT = 9100
EXPORTER_QUERIES = "/etc/postgres_exporter/queries.yaml"


def render_exporter_queries() -> bytes:
    """A query every exporter runs: ``pgmon_database_info{datname=<its database>} 1``.

    With the target labels (``database``, ``server``) it tells the alert rules which configured
    database a server-wide row (by ``datname``) is about, so adding a database changes no rule.
    (postgres_exporter 0.17 marks --extend.query-path deprecated; it is its only way to add a query.)
    """
    return _yaml(
        {
            "pgmon_database": {
                "query": "SELECT current_database() AS datname, 1 AS info",
                "metrics": [
                    {"datname": {"usage": "LABEL", "description": "The database this exporter connects to"}},
                    {"info": {"usage": "GAUGE", "description": "Always 1; pgmon's rules join on it"}},
                ],
            }
        }
    )


@dataclass(frozen=True)
class ManagedFile:
    """A file pgmon owns under base_dir. ``on_change`` names what must follow an update."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    uid: int = ROOT
    gid: int = ROOT
    secret: bool = False
    on_change: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class ManagedDir:
    path: str
    mode: int = 0o755
    uid: int = ROOT
    gid: int = ROOT


@dataclass(frozen=True)
class StackFiles:
    directories: tuple[ManagedDir, ...]
    files: tuple[ManagedFile, ...]
    service_revisions: dict[str, str]  # compose service -> its pgmon.revision label


# Post-update actions, executed by tasks/stack_files.py when a file changed.
RELOAD_PROMETHEUS = "reload:prometheus"
RELOAD_ALERTMANAGER = "reload:alertmanager"
RESTART_GRAFANA = "restart:grafana"
RESET_GRAFANA_PASSWORD = "reset-password:grafana"


def exporter_service(db: Database) -> str:
    return f"exporter-{db.name}"


def restart_action(service: str) -> str:
    return f"restart:{service}"


def _yaml(data) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096).encode()


def _escape_compose(value):
    # Compose interpolates "$VAR" in every string; "$$" is a literal dollar.
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_compose(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_compose(v) for k, v in value.items()}
    return value


def server_primaries(settings: Settings) -> set[str]:
    """Names of the databases whose exporter runs the server-wide collectors (first per server)."""
    primaries: dict[tuple[str, int], str] = {}
    for db in settings.databases:
        primaries.setdefault((db.host, db.port), db.name)
    return set(primaries.values())


def exporter_flags(primary: bool, statements: bool = False, tables: bool = True) -> list[str]:
    """``statements``: the database has pg_stat_statements (whose view lists every database's statements).

    ``tables``: keep the per-table collectors; False drops the largest share of series for many-table databases.
    """
    flags = ["--web.listen-address=:9187", "--log.level=warn", f"--extend.query-path={EXPORTER_QUERIES}"]
    if not tables:
        flags += ["--no-collector.stat_user_tables", "--no-collector.statio_user_tables"]
    if statements:
        # Only where the extension is: elsewhere the query fails, and PostgreSQL logs it, at every scrape.
        flags.append("--collector.stat_statements")
    if primary:
        return flags + [f"--collector.{name}" for name in SERVER_WIDE_OPT_IN_COLLECTORS]
    return flags + ["--disable-default-metrics", "--disable-settings-metrics"] + [
        f"--no-collector.{name}" for name in SERVER_WIDE_COLLECTORS
    ]


def data_source_uri(db: Database) -> str:
    """host:port/dbname?sslmode=… as postgres_exporter wants it, the database name URL-escaped."""
    return f"{db.server}/{quote(db.dbname, safe='')}?sslmode={db.sslmode}"


def _healthcheck(url: str) -> dict:
    return {
        "test": ["CMD", "wget", "-q", "-O", "/dev/null", url],
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "20s",
    }


def compose_services(settings: Settings) -> dict[str, dict]:
    """Every service of the stack, each labelled with a revision that changes with its definition."""
    cfg = settings.config
    project = cfg.project
    host_gateway = ["host.docker.internal:host-gateway"]
    services: dict[str, dict] = {
        "prometheus": {
            "image": settings.image("prometheus"),
            "container_name": f"{project}-prometheus",
            "restart": "unless-stopped",
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=30d",
            ],
            "ports": [f"127.0.0.1:{cfg.prometheus_port}:9090"],
            "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
            "networks": ["metrics", "ui"],
            "healthcheck": _healthcheck("http://127.0.0.1:9090/-/ready"),
        },
        "alertmanager": {
            "image": settings.image("alertmanager"),
            "container_name": f"{project}-alertmanager",
            "restart": "unless-stopped",
            "command": [
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
                "--cluster.listen-address=",  # a single instance: no gossip port
            ],
            "ports": [f"127.0.0.1:{cfg.alertmanager_port}:9093"],
            "volumes": ["./alertmanager:/etc/alertmanager:ro", "alertmanager-data:/alertmanager"],
            "networks": ["metrics"],
            "extra_hosts": host_gateway,
            "healthcheck": _healthcheck("http://127.0.0.1:9093/-/ready"),
        },
        "grafana": {
            "image": settings.image("grafana"),
            "container_name": f"{project}-grafana",
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
            "ports": [f"{cfg.grafana_bind_address}:{cfg.grafana_port}:3000"],
            "volumes": [
                "grafana-data:/var/lib/grafana",
                "./grafana/provisioning:/etc/grafana/provisioning:ro",
                "./grafana/dashboards:/etc/grafana/dashboards:ro",
                "./grafana/secrets:/etc/grafana/secrets:ro",
            ],
            "networks": ["ui"],
            "depends_on": ["prometheus"],
            "healthcheck": _healthcheck("http://127.0.0.1:3000/api/health"),
        },
    }
    services["node-exporter"] = {
        "image": settings.image("node_exporter"),
        "container_name": f"{project}-node-exporter",
        "restart": "unless-stopped",
        # The host's CPU, memory and file systems: its processes and root file system, read-only.
        "command": ["--path.rootfs=/host", f"--web.listen-address=:{NODE_EXPORTER_PORT}", "--log.level=warn"],
        "pid": "host",
        "volumes": ["/:/host:ro"],
        "networks": ["metrics"],
        "healthcheck": _healthcheck(f"http://127.0.0.1:{NODE_EXPORTER_PORT}/"),
    }
    primaries = server_primaries(settings)
    for db in settings.databases:
        services[exporter_service(db)] = {
            "image": settings.image("postgres_exporter"),
            "container_name": f"{project}-exporter-{db.name}",
            "restart": "unless-stopped",
            "command": exporter_flags(db.name in primaries, db.pg_stat_statements, db.table_metrics),
            "environment": {
                "DATA_SOURCE_URI": data_source_uri(db),
                "DATA_SOURCE_USER": db.user,
                # A file, never the URL: any password works and none shows in `docker inspect`.
                "DATA_SOURCE_PASS_FILE": "/etc/postgres_exporter/password",
            },
            "volumes": [f"./exporters/{db.name}:/etc/postgres_exporter:ro"],
            "networks": ["metrics"],
            "extra_hosts": host_gateway,
            "healthcheck": _healthcheck(f"http://127.0.0.1:{EXPORTER_PORT}/"),
        }
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
        "volumes": {"prometheus-data": {}, "alertmanager-data": {}, "grafana-data": {}},
    }
    return _yaml(_escape_compose(document))


def render_prometheus_config(settings: Settings) -> bytes:
    cfg = settings.config
    return _yaml(
        {
            "global": {
                "scrape_interval": f"{cfg.scrape_interval_seconds}s",
                "evaluation_interval": f"{cfg.evaluation_interval_seconds}s",
            },
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
            "rule_files": ["/etc/prometheus/rules/*.yml"],
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
                {"job_name": "alertmanager", "static_configs": [{"targets": ["alertmanager:9093"]}]},
                {
                    # File discovery: adding a database needs no Prometheus restart or reload.
                    "job_name": "postgres",
                    "file_sd_configs": [
                        {"files": ["/etc/prometheus/targets/postgres.json"], "refresh_interval": "30s"}
                    ],
                },
                {
                    "job_name": "node",
                    "static_configs": [
                        {"targets": [f"node-exporter:{NODE_EXPORTER_PORT}"], "labels": {"instance": "processing-host"}}
                    ],
                },
            ],
        }
    )


def render_postgres_targets(settings: Settings) -> bytes:
    targets = [
        {
            "targets": [f"{exporter_service(db)}:{EXPORTER_PORT}"],
            "labels": {**db.labels, "database": db.name, "server": db.server, "instance": db.name},
        }
        for db in settings.databases
    ]
    return (json.dumps(targets, indent=2, ensure_ascii=False) + "\n").encode()


def _rules_jinja() -> jinja2.Environment:
    """Jinja for the rule template: [[ ]] and [% %], so Prometheus's {{ }} is written as it is."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
    # A JSON string is a YAML string; Jinja's own tojson would also turn < and > into \u003c for HTML.
    env.filters["tojson"] = json.dumps
    env.filters["oneline"] = lambda text: " ".join(line.strip() for line in text.splitlines() if line.strip())
    env.filters["sel"] = lambda match: "{" + match + "}" if match else ""  # metric[[ v.match | sel ]]
    env.filters["also"] = lambda match: ", " + match if match else ""  # {job="x"[[ v.match | also ]]}
    env.filters["window"] = lambda duration: f"[{duration}]"  # a range: metric[[ w | window ]]
    env.filters["num"] = _number
    env.filters["seconds"] = _seconds_text
    return env


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds_text(value: float) -> str:
    """A threshold in seconds as people read it: 300 -> '5m', 5400 -> '1h30m', 0.5 -> '0.5s'."""
    if not float(value).is_integer() or value < 60:
        return _number(value) + "s"
    rest, parts = int(value), []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


@dataclass(frozen=True)
class RuleVariant:
    """One copy of the rules for the databases (or servers) that share thresholds.

    ``match`` is the PromQL matcher selecting them, ``labels`` tells the copies apart (a static
    ``thresholds`` label: "default", or the members); both are empty when one copy serves all.
    """

    t: AlertThresholds
    down_for: str = ""
    match: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def promql_string(value: str) -> str:
    return json.dumps(value)  # PromQL string literals take JSON's escapes


def _matcher(label: str, values: list[str]) -> str:
    if len(values) == 1:
        return f"{label}={promql_string(values[0])}"
    alternatives = "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value) for value in values)
    return f"{label}=~{promql_string(alternatives)}"


def _variants(label: str, groups: dict[tuple, tuple[RuleVariant, list[str]]], default: tuple) -> list[RuleVariant]:
    if len(groups) == 1:
        return [variant for variant, _ in groups.values()]
    return [
        replace(variant, match=_matcher(label, members),
                labels={"thresholds": "default" if key == default else ", ".join(members)})
        for key, (variant, members) in groups.items()
    ]


def rule_variants(settings: Settings) -> tuple[list[RuleVariant], list[RuleVariant]]:
    """Per-database and per-server copies of the rules, one per distinct set of thresholds."""
    cfg = settings.config

    def database_key(thresholds: AlertThresholds, down_for: str) -> tuple:
        return (tuple(thresholds.model_dump(exclude=SERVER_THRESHOLDS).items()), down_for)

    def server_key(thresholds: AlertThresholds) -> tuple:
        return tuple(thresholds.model_dump(include=SERVER_THRESHOLDS).items())

    by_database: dict[tuple, tuple[RuleVariant, list[str]]] = {}
    by_server: dict[tuple, tuple[RuleVariant, list[str]]] = {}
    for db in settings.databases:
        thresholds, down_for = cfg.thresholds_for(db), cfg.postgres_down_for(db)
        variant = RuleVariant(thresholds, down_for)
        by_database.setdefault(database_key(thresholds, down_for), (variant, []))[1].append(db.name)
        servers = by_server.setdefault(server_key(thresholds), (variant, []))[1]
        if db.server not in servers:
            servers.append(db.server)
    return (
        _variants("database", by_database, database_key(cfg.alert_thresholds, cfg.alert_timing.postgres_down_for)),
        _variants("server", by_server, server_key(cfg.alert_thresholds)),
    )


def render_rules(settings: Settings) -> bytes:
    cfg = settings.config
    databases, servers = rule_variants(settings)
    extra_labels = sorted({key for db in settings.databases for key in db.labels})
    template = _rules_jinja().get_template("prometheus/pgmon.rules.yml.j2")
    return template.render(
        project=cfg.project,
        # Labels a rule built on a server-wide series takes from pgmon_database_info.
        join_labels=", ".join(["database", *extra_labels]),
        databases=databases,
        servers=servers,
        host=cfg.alert_thresholds,
        down_for=cfg.alert_timing.postgres_down_for,
        host_rate_window=f"{max(300, MIN_SCRAPES_PER_WINDOW * cfg.scrape_interval_seconds)}s",
    ).encode()


def render_recording_rules(settings: Settings) -> bytes:
    """The series pgmon's dashboards read: per-database and per-table ratios and rates."""
    window = max(60, MIN_SCRAPES_PER_WINDOW * settings.config.scrape_interval_seconds)
    template = _rules_jinja().get_template("prometheus/pgmon.recording.yml.j2")
    return template.render(window=f"{window}s").encode()


def pgmon_dashboard_files() -> dict[str, bytes]:
    """pgmon's own dashboards (files/grafana/dashboards), provisioned as they are in the repository."""
    return {path.name: path.read_bytes() for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def provisioned_dashboard_uids() -> list[str]:
    """The uid of every dashboard pgmon provisions: 9628 first, then its own."""
    return [DASHBOARD_9628_UID] + [json.loads(content)["uid"] for content in pgmon_dashboard_files().values()]


def _severity_matcher(severities: list[str]) -> str:
    if len(severities) == 1:
        return f"severity={promql_string(severities[0])}"
    return f"severity=~{promql_string('|'.join(severities))}"


def render_alertmanager_config(settings: Settings) -> bytes:
    cfg = settings.config
    timing = cfg.alert_timing
    receivers: list[dict] = [{"name": "blackhole"}]
    routes: list[dict] = []
    if settings.watchdog_url is not None:
        receivers.append(
            {
                "name": "watchdog",
                "webhook_configs": [{"url_file": "/etc/alertmanager/secrets/watchdog_url", "send_resolved": False}],
            }
        )
        # The dead man's switch wants the always-firing Watchdog every interval, not every repeat_interval.
        routes.append(
            {
                "receiver": "watchdog",
                "matchers": ['alertname="Watchdog"'],
                "group_wait": "0s",
                "group_interval": cfg.watchdog.interval,
                "repeat_interval": cfg.watchdog.interval,
            }
        )
    if settings.discord_webhook_url is not None:
        receivers.append(
            {
                "name": "discord",
                "discord_configs": [
                    {
                        "webhook_url_file": "/etc/alertmanager/secrets/discord_webhook_url",
                        "send_resolved": True,
                        "title": '{{ template "pgmon.title" . }}',
                        "message": '{{ template "pgmon.discord.message" . }}',
                    }
                ],
            }
        )
        routes.append({"receiver": "discord", "matchers": [_severity_matcher(cfg.discord.severities)], "continue": True})
    if settings.telegram_bot_token is not None:
        receivers.append(
            {
                "name": "telegram",
                # One config per chat: Alertmanager's telegram_configs take a single chat_id each.
                "telegram_configs": [
                    {
                        "bot_token_file": "/etc/alertmanager/secrets/telegram_bot_token",
                        "chat_id": chat_id,
                        "api_url": cfg.telegram.api_url,
                        "parse_mode": "HTML",
                        "send_resolved": True,
                        "message": '{{ template "pgmon.telegram.message" . }}',
                    }
                    for chat_id in settings.telegram_chat_ids
                ],
            }
        )
        routes.append({"receiver": "telegram", "matchers": [_severity_matcher(cfg.telegram.severities)], "continue": True})
    return _yaml(
        {
            "templates": ["/etc/alertmanager/templates/*.tmpl"],
            "route": {
                # Watchdog (severity "none") and anything no channel takes end here.
                "receiver": "blackhole",
                "group_by": ["alertname", "server", "database"],
                "group_wait": timing.group_wait,
                "group_interval": timing.group_interval,
                "repeat_interval": timing.repeat_interval,
                "routes": routes,
            },
            "inhibit_rules": [
                {
                    # While a database is down, its other alerts are noise.
                    "source_matchers": ['alertname="PostgresDown"'],
                    "target_matchers": ['alertname!="PostgresDown"'],
                    "equal": ["database"],
                }
            ],
            "receivers": receivers,
        }
    )


def render_grafana_datasource(settings: Settings) -> bytes:
    return _yaml(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": DATASOURCE_UID,
                    "access": "proxy",
                    "url": "http://prometheus:9090",
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"timeInterval": f"{settings.config.scrape_interval_seconds}s"},
                }
            ],
        }
    )


def render_grafana_dashboard_provider() -> bytes:
    return _yaml(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "pgmon",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 10,
                    "options": {"path": "/etc/grafana/dashboards"},
                }
            ],
        }
    )


def bind_dashboard_inputs(dashboard: dict, values: dict[str, str], uid: str) -> dict:
    """Do what Grafana's import does with ``__inputs``: put each value where ``${NAME}`` stands.

    Refuses a dashboard whose inputs are not all given, as Grafana's import does.
    """
    names = [item.get("name") for item in dashboard.get("__inputs", [])]
    missing = [name for name in names if name not in values]
    if missing:
        raise ValueError(f"dashboard needs inputs {missing} that pgmon does not provide")
    text = json.dumps({k: v for k, v in dashboard.items() if k not in ("__inputs", "__requires")})
    for name in names:
        text = text.replace("${" + name + "}", values[name])
    bound = json.loads(text)
    bound["uid"] = uid
    bound["id"] = None
    return bound


def render_stack(settings: Settings, dashboard_9628: dict) -> StackFiles:
    """Every directory and file under base_dir, with owners and modes the containers need.

    Example:

    .. code:: python

        stack = render_stack(settings, json.load(open("9628.json")))
        [f.path for f in stack.files]  # ["docker-compose.yml", "prometheus/prometheus.yml", ...]
    """
    services = compose_services(settings)
    dashboard = bind_dashboard_inputs(dashboard_9628, {"DS_PROMETHEUS": DATASOURCE_UID}, DASHBOARD_9628_UID)
    directories = [
        ManagedDir("."),
        ManagedDir("prometheus"),
        ManagedDir("prometheus/rules"),
        ManagedDir("prometheus/targets"),
        ManagedDir("alertmanager"),
        ManagedDir("alertmanager/templates"),
        ManagedDir("alertmanager/secrets", 0o500, NOBODY, NOBODY),
        ManagedDir("exporters"),
        ManagedDir("grafana"),
        ManagedDir("grafana/provisioning"),
        ManagedDir("grafana/provisioning/datasources"),
        ManagedDir("grafana/provisioning/dashboards"),
        ManagedDir("grafana/dashboards"),
        ManagedDir("grafana/secrets", 0o500, GRAFANA_UID, GRAFANA_GID),
    ]
    secret = dict(mode=0o400, uid=NOBODY, gid=NOBODY, secret=True)
    files = [
        ManagedFile("docker-compose.yml", render_compose(settings, services)),
        ManagedFile("prometheus/prometheus.yml", render_prometheus_config(settings), on_change=(RELOAD_PROMETHEUS,)),
        ManagedFile("prometheus/rules/pgmon.rules.yml", render_rules(settings), on_change=(RELOAD_PROMETHEUS,)),
        ManagedFile("prometheus/rules/pgmon.recording.yml", render_recording_rules(settings),
                    on_change=(RELOAD_PROMETHEUS,)),
        ManagedFile("prometheus/targets/postgres.json", render_postgres_targets(settings)),
        # Holds the Telegram chat id: readable by the Alertmanager user only.
        ManagedFile(
            "alertmanager/alertmanager.yml",
            render_alertmanager_config(settings),
            mode=0o440,
            gid=NOBODY,
            secret=True,
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
        *(ManagedFile(f"grafana/dashboards/{name}", content) for name, content in pgmon_dashboard_files().items()),
        ManagedFile(
            "grafana/secrets/admin_password",
            settings.grafana_admin_password.get_secret_value().encode(),
            mode=0o400,
            uid=GRAFANA_UID,
            gid=GRAFANA_GID,
            secret=True,
            on_change=(RESET_GRAFANA_PASSWORD,),
        ),
    ]
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
                **secret,
            )
        )
    if settings.watchdog_url is not None:
        files.append(
            ManagedFile("alertmanager/secrets/watchdog_url", settings.watchdog_url.get_secret_value().encode(), **secret)
        )
    for db in settings.databases:
        directories.append(ManagedDir(f"exporters/{db.name}", 0o500, NOBODY, NOBODY))
        files.append(
            ManagedFile(
                f"exporters/{db.name}/password",
                settings.database_passwords[db.name].get_secret_value().encode(),
                on_change=(restart_action(exporter_service(db)),),
                **secret,
            )
        )
        # In the exporter's own folder: a single-file mount would keep showing a replaced file's old inode.
        files.append(
            ManagedFile(
                f"exporters/{db.name}/queries.yaml",
                render_exporter_queries(),
                mode=0o400,
                uid=NOBODY,
                gid=NOBODY,
                on_change=(restart_action(exporter_service(db)),),
            )
        )
    revisions = {name: svc["labels"]["pgmon.revision"] for name, svc in services.items()}
    return StackFiles(tuple(directories), tuple(files), revisions)
