"""Step 4's database checks: every exporter asked now, each database's verdict, and what to check.

Split from verify_stack.py, which checks the stack's own parts and reports: these change with what
pgmon reads of PostgreSQL and what a DBA is told to fix there.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .http_tunnel import HostHTTP
from .render.api_auth import api_credentials
from .render.prometheus import promql_string
from .settings import Settings
from .settings.discovery import LONGEST_PROBE_INTERVAL
from .stack_model import (
    DISCOVERED_MOUNT,
    EXPORTER_PORT,
    container_name,
    discovered_file,
    exporter_service,
    tenants_service,
)

# The names a database on the processing host itself goes by (README, "pg_hba.conf and SSL"):
# its connections come from the exporters' Docker network, not from the host's address.
ON_PROCESSING_HOST = ("host.docker.internal", "172.17.0.1")


@dataclass(frozen=True)
class Finding:
    subject: str
    ok: bool
    detail: str
    hint: str = ""


# What verification reads of an exporter: its own verdicts and the role's privileges (privilege_warning).
READING_METRICS = "pg_up|pg_exporter_last_scrape_error|pgmon_role_[a-z_]+"
# Exporters asked at once: all 200 of a first deploy at once kept a 2-core host's tail past the 10 s timeout
# on every try (the benchmark); in rounds of this many each answers in well under a second.
LIVE_SCRAPES_AT_ONCE = 16
LIVE_SCRAPE_TIMEOUT_SECONDS = 10


def exporter_readings_command(settings: Settings, names: Collection[str]) -> str:
    """Scrape the exporters of the databases ``names`` now, ``LIVE_SCRAPES_AT_ONCE`` at a time, from inside
    the Prometheus container (its busybox wget).

    Prints ``<database> pg_up <v>`` and ``<database> pg_exporter_last_scrape_error <v>`` lines.
    Asking the exporters directly gives the state of this moment, not of the last scrape.
    Exporters are addressed by IP on the metrics network, read from Docker on the host:
    a busybox wget is not guaranteed to resolve names.
    """
    project = settings.config.project
    network_members = "{{range .Containers}}/{{.Name}} {{.IPv4Address}}{{println}}{{end}}"
    # "/<project>-exporter-<db> 172.18.0.5/16" -> "<db> 172.18.0.5"
    to_db_and_ip = (
        r"s#^/" + container_name(project, exporter_service("")) + r"\([^ ]*\) \([^/]*\)/.*#\1 \2#p"
    )
    addresses = " ".join(
        [
            "docker network inspect -f",
            shlex.quote(network_members),
            shlex.quote(project + "-metrics"),
            "| sed -n",
            shlex.quote(to_db_and_ip),
        ]
    )
    # Names are pgmon names (no space): one word each in the list.
    wanted = shlex.quote(f" {' '.join(names)} ")
    scrape = (
        f'n=0; while read db ip; do case {wanted} in *" $db "*) ;; *) continue ;; esac; '
        # `timeout` rather than wget's -T, which Debian's static busybox mishandles.
        f"(timeout {LIVE_SCRAPE_TIMEOUT_SECONDS} wget -q -O - http://$ip:{EXPORTER_PORT}/metrics 2>/dev/null"
        f" | grep -E '^({READING_METRICS})[ {{]'"
        ' | sed "s/{[^}]*}//; s/^/$db /") & '
        f"n=$((n + 1)); [ $((n % {LIVE_SCRAPES_AT_ONCE})) -ne 0 ] || wait; done; wait"
    )
    container = shlex.quote(container_name(project, "prometheus"))
    # Bounded on the host too (a hung Docker daemon answers neither `network inspect` nor `exec`): by the
    # rounds' own timeouts, and half a minute for Docker.
    rounds = -(-len(names) // LIVE_SCRAPES_AT_ONCE)
    bound = 30 + rounds * LIVE_SCRAPE_TIMEOUT_SECONDS
    return f"timeout {bound} sh -c {shlex.quote(f'{addresses} | docker exec -i {container} sh -c {shlex.quote(scrape)}')}"


def parse_exporter_readings(lines: list[str]) -> dict[str, dict[str, float]]:
    readings: dict[str, dict[str, float]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            readings.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    return readings


def last_scrape_readings(
    settings: Settings, http: HostHTTP, names: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Readings of the databases ``names`` from Prometheus's own last scrape of their exporters, for those
    scraped healthily (up 1, pg_up 1, no scrape error) less than one scrape interval ago; the others are
    left out, to be asked live.

    At hundreds of databases this replaces as many scrapes with one query: a deploy that did not touch an
    exporter trusts what Prometheus saw of it a moment ago (issue 22's re-run at scale).
    """
    wanted = set(names)
    if not wanted:
        return {}
    # A range of one interval holds a series' samples only if it was scraped within it (Prometheus's clock).
    selector = (
        f'{{job="postgres",__name__=~"up|{READING_METRICS}"}}'
        f"[{settings.config.scrape_interval_seconds}s]"
    )
    _, body = http.get_json(
        "127.0.0.1",
        settings.config.prometheus_port,
        f"/api/v1/query?query={quote(selector)}",
        api_credentials(settings),
    )
    seen: dict[str, dict[str, float]] = {}
    for series in (body or {}).get("data", {}).get("result", []):
        database = series["metric"].get("database")
        if database in wanted and series.get("values"):
            seen.setdefault(database, {})[series["metric"]["__name__"]] = float(
                series["values"][-1][1]
            )
    return {
        database: {k: v for k, v in reading.items() if k != "up"}
        for database, reading in seen.items()
        if reading.get("up") == 1
        and reading.get("pg_up") == 1
        and reading.get("pg_exporter_last_scrape_error", 0) == 0
    }


@dataclass(frozen=True)
class Readings:
    """Each listed database's reading, and which of them are Prometheus's last scrape rather than asked now."""

    by_database: dict[str, dict[str, float]]
    from_last_scrape: frozenset[str] = frozenset()


def exporter_readings(
    settings: Settings, http: HostHTTP, run_shell, live: Collection[str] | None
) -> Readings:
    """Every listed database's reading: asked now of the exporters named in ``live`` (None: all of them)
    and of any whose last scrape cannot be trusted; Prometheus's last scrape for the rest."""
    names = [db.name for db in settings.databases]
    trusted = last_scrape_readings(
        settings, http, [] if live is None else [n for n in names if n not in live]
    )
    asked = [n for n in names if n not in trusted]
    if asked:
        now = parse_exporter_readings(run_shell(exporter_readings_command(settings, asked)))
    else:
        now = {}
    return Readings(trusted | now, frozenset(trusted))


def postgres_targets(settings: Settings, http: HostHTTP) -> list[dict]:
    """Prometheus's active targets of the postgres job: one per listed database and per database found."""
    _, body = http.get_json(
        "127.0.0.1",
        settings.config.prometheus_port,
        "/api/v1/targets?state=active",
        api_credentials(settings),
    )
    return [
        t
        for t in (body or {}).get("data", {}).get("activeTargets", [])
        if t["labels"].get("job") == "postgres"
    ]


def check_databases(settings: Settings, targets: list[dict], readings: Readings) -> list[Finding]:
    """Each listed database (and discovered server's own exporter), from ``postgres_targets``' answer."""
    targets = {t["labels"].get("database"): t for t in targets}
    findings = []
    for db in settings.databases:
        subject = f"database {db.name}"
        where = f"{db.server}/{db.dbname}"
        container = container_name(settings.config.project, exporter_service(db.name))
        target = targets.get(db.name)
        reading = readings.by_database.get(db.name, {})
        if "pg_up" not in reading:
            findings.append(
                Finding(subject, False, "its exporter does not answer", f"docker logs {container}")
            )
        elif reading["pg_up"] != 1:
            findings.append(
                Finding(
                    subject,
                    False,
                    f"PostgreSQL unreachable from the exporter (pg_up 0) at {where}",
                    f"is the server up and listening? does pg_hba.conf admit user {db.user!r} "
                    f"{_seen_from(db.host)}? is ${db.password_env} right? "
                    f"then: docker logs {container} (its last lines say which)",
                )
            )
        elif reading.get("pg_exporter_last_scrape_error", 0) != 0:
            findings.append(
                Finding(
                    subject,
                    False,
                    "exporter reports a scrape error",
                    f"does {db.user!r} have the pg_monitor role? docker logs {container}",
                )
            )
        elif target is None:
            findings.append(
                Finding(
                    subject,
                    False,
                    f"not discovered by Prometheus yet ({where})",
                    "is prometheus/targets/postgres.json on the host current?",
                )
            )
        elif target["health"] != "up":
            error = target.get("lastError") or "not scraped yet"
            findings.append(
                Finding(
                    subject,
                    False,
                    f"Prometheus cannot scrape its exporter: {error}",
                    f"docker logs {container}",
                )
            )
        else:
            seen = " (Prometheus's last scrape)" if db.name in readings.from_last_scrape else ""
            findings.append(
                Finding(subject, True, f"pg_up 1 at {where}{seen}{privilege_warning(db, reading)}")
            )
    return findings


# How many names of databases found a line of the deploy's output lists; the rest are counted.
LISTED_NAMES_MAX = 20


def names_text(server_name: str, labels: list[str]) -> str:
    """The databases of a server, by their names there: ``a, b, c and 12 more``."""
    names = [label.removeprefix(server_name + "/") for label in labels]
    more = len(names) - LISTED_NAMES_MAX
    return ", ".join(names[:LISTED_NAMES_MAX]) + (f" and {more} more" if more > 0 else "")


# Probes a second one server's databases took on the benchmark's 2-core host, PostgreSQL beside them: 200 every
# 15 s (13 a second) held; 500 (33 a second) piled up until every probe timed out (docs/benchmarks.md).
PROBES_PER_SECOND_HELD = 13.5


def describe_discovered(settings: Settings, discovered: dict[str, list[str]]) -> list[str]:
    """What each discovered server's list on the host names now, and a warning where probing them all at the
    configured interval is beyond the rate measured to hold: said before any change, ``--dry`` too."""
    lines = []
    for server in settings.config.servers:
        labels = discovered.get(server.name)
        if labels is None:
            lines.append(f"server {server.name}: not listed on the host yet ({server.server})")
            continue
        lines.append(
            f"server {server.name}: {len(labels)} databases listed on the host now "
            f"({server.server}){': ' + names_text(server.name, labels) if labels else ''}"
        )
        interval = server.scrape_interval_seconds or settings.config.scrape_interval_seconds
        if warning := probe_rate_warning(server.name, len(labels), interval):
            lines.append(warning)
    return lines


def probe_rate_warning(server_name: str, databases: int, interval: int) -> str | None:
    """A warning naming the probe interval that fits, where ``databases`` probed every ``interval`` seconds
    is faster than ``PROBES_PER_SECOND_HELD``; None where it is not."""
    rate = databases / interval
    if rate <= PROBES_PER_SECOND_HELD:
        return None
    advised = math.ceil(databases / PROBES_PER_SECOND_HELD)
    fix = (
        f'"scrape_interval_seconds": {advised} or more on its entry in pgmon_servers'
        if advised <= LONGEST_PROBE_INTERVAL
        else f"fewer of them (exclude patterns): even every {LONGEST_PROBE_INTERVAL} s is faster"
    )
    return (
        f"WARNING server {server_name}: {databases} databases probed every {interval} s is "
        f"{rate:.0f} probes a second, each logging in twice; on 2 cores beside PostgreSQL "
        f"{PROBES_PER_SECOND_HELD:g} a second held and 33 piled up until every probe timed out: "
        f"{fix} (docs/many-databases.md, Probe rate)"
    )


def check_discovered_servers(
    settings: Settings, http: HostHTTP, targets: list[dict]
) -> list[Finding]:
    """Each discovered server: listed (its file read by Prometheus), and every database found scraped."""
    if not settings.config.servers:
        return []
    query = quote(
        f"prometheus_sd_file_mtime_seconds{{filename=~{promql_string(DISCOVERED_MOUNT + '/.*')}}}"
    )
    _, body = http.get_json(
        "127.0.0.1",
        settings.config.prometheus_port,
        f"/api/v1/query?query={query}",
        api_credentials(settings),
    )
    read = {r["metric"]["filename"] for r in (body or {}).get("data", {}).get("result", [])}
    findings = []
    for server in settings.config.servers:
        subject = f"server {server.name}"
        own = container_name(settings.config.project, exporter_service(server.name))
        if discovered_file(server.name) not in read:
            findings.append(
                Finding(
                    subject,
                    False,
                    f"its databases are not listed yet ({server.server})",
                    f"docker logs {own} (the listing query's error, if any)",
                )
            )
            continue
        found = sorted(
            (t for t in targets if t["labels"].get("discovered_by") == server.name),
            key=lambda t: t["labels"]["database"],
        )
        shown = names_text(server.name, [t["labels"]["database"] for t in found])
        down = [t for t in found if t["health"] != "up"]
        if down:
            error = down[0].get("lastError") or "not scraped yet"
            findings.append(
                Finding(
                    subject,
                    False,
                    f"{len(down)} of {len(found)} databases found not scraped: "
                    f"{down[0]['labels']['database']}: {error}",
                    "docker logs "
                    + container_name(settings.config.project, tenants_service(server.name)),
                )
            )
        elif found:
            findings.append(
                Finding(subject, True, f"{len(found)} databases found on {server.server}: {shown}")
            )
        else:
            findings.append(
                Finding(
                    subject,
                    True,
                    f"no database found on {server.server} matching include {server.include}",
                )
            )
    return findings


def _seen_from(host: str) -> str:
    """Where PostgreSQL sees the exporter's connection come from (README, "pg_hba.conf and SSL")."""
    if host in ON_PROCESSING_HOST:
        return "from pgmon's Docker network (172.16.0.0/12, or docker network inspect's subnet)"
    return "from the processing host's own address (Docker translates it on the way out)"


def privilege_warning(db, reading: dict[str, float]) -> str:
    """What the monitoring role may do beyond pg_monitor, said after an ok (README: a least-privilege role)."""
    more = [
        what
        for metric, what in (
            ("pgmon_role_superuser", "is a superuser"),
            (
                "pgmon_role_extra_attributes",
                "may create roles or databases, replicate or bypass row security",
            ),
        )
        if reading.get(metric, 0) > 0
    ]
    if reading.get("pgmon_role_writable_tables", 0) > 0:
        more.append(
            f"may write {reading['pgmon_role_writable_tables']:.0f} table(s) of {db.dbname!r}"
        )
    if not more:
        return ""
    return (
        f"; WARNING role {db.user!r} {', and '.join(more)}: monitoring needs pg_monitor only "
        '(README, "A least-privilege monitoring role")'
    )


def slow_query_coverage(settings: Settings) -> Finding:
    """Where the SlowQueries rule can fire: only on servers with a database that has pg_stat_statements."""
    servers = sorted({db.server for db in settings.databases})
    covered = {db.server for db in settings.databases if db.pg_stat_statements}
    silent = [server for server in servers if server not in covered]
    if not silent:
        return Finding("slow queries", True, "pg_stat_statements read on every server")
    # Not a failure: the extension is optional. Saying so keeps a silent rule from passing for a quiet one.
    return Finding(
        "slow queries",
        True,
        f"rule silent on {', '.join(silent)}: no database there has "
        "pg_stat_statements = True (CREATE EXTENSION pg_stat_statements, then set it on one entry)",
    )
