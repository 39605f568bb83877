"""Before the host is touched: do the exporters fit in each server's ``max_connections``?

What postgres_exporter 0.19 holds on a server: a listed database's exporter (and a discovered server's own)
keeps one connection open between scrapes and opens a second while it scrapes; each probe of a database
found opens two for its scrape and closes them, and nothing bounds how many probes run at once but the
monitoring role's ``CONNECTION LIMIT``. Prometheus on the host knows each watched server's slots and who
holds them, from the exporters already running; this step asks it before any change. A deploy whose
exporters would hold more connections than a server has left is refused; one that could use them all while
scraping is warned of. A server Prometheus does not know yet (a first deploy) is not judged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from .http_tunnel import HostHTTP
from .render.api_auth import api_credentials
from .settings import DeployError, Settings

# One query, each part told apart by its ``of`` label (``or`` would otherwise drop parts with equal labels).
# pg_stat_activity is server-wide: every exporter of a server reports the same counts, hence max by server.
SERVER_CONNECTIONS_QUERY = " or ".join(
    f'label_replace({expression}, "of", "{part}", "", "")'
    for part, expression in (
        (
            "slots",
            "max by (server) (pg_settings_max_connections - pg_settings_superuser_reserved_connections)",
        ),
        (
            "clients",
            'max by (server) (sum by (server, database) (pg_stat_activity_count{backend_type="client backend"}))',
        ),
        (
            "role",
            "max by (server, usename) (sum by (server, database, usename) "
            '(pg_stat_activity_count{backend_type="client backend"}))',
        ),
        ("limit", "max by (server, rolname) (pg_roles_connection_limit)"),
    )
)


@dataclass
class ServerConnections:
    """A server as Prometheus last saw it: its slots for clients, how many clients hold one, by role too, and
    each role's connection limit (-1: none)."""

    slots: int
    clients: int = 0
    by_role: dict[str, int] = field(default_factory=dict)
    role_limits: dict[str, int] = field(default_factory=dict)


def parse_server_connections(result: list[dict]) -> dict[str, ServerConnections]:
    """``SERVER_CONNECTIONS_QUERY``'s answer, by server; servers without a ``slots`` part are left out."""
    parts: dict[str, dict[str, list[tuple[dict, int]]]] = {}
    for series in result:
        labels = series["metric"]
        parts.setdefault(labels.get("server", ""), {}).setdefault(labels["of"], []).append(
            (labels, round(float(series["value"][1])))
        )
    servers = {}
    for server, of in parts.items():
        if not of.get("slots"):
            continue
        servers[server] = ServerConnections(
            slots=of["slots"][0][1],
            clients=of["clients"][0][1] if of.get("clients") else 0,
            by_role={labels.get("usename", ""): n for labels, n in of.get("role", [])},
            role_limits={labels.get("rolname", ""): n for labels, n in of.get("limit", [])},
        )
    return servers


def read_server_connections(settings: Settings, http: HostHTTP) -> dict[str, ServerConnections]:
    """What Prometheus on the host knows of the servers; nothing when it does not answer (not deployed yet)."""
    status, body = http.get_json(
        "127.0.0.1",
        settings.config.prometheus_port,
        f"/api/v1/query?query={quote(SERVER_CONNECTIONS_QUERY)}",
        api_credentials(settings),
    )
    if status != 200 or not body:
        return {}
    return parse_server_connections(body.get("data", {}).get("result", []))


def budget_lines(
    settings: Settings, known: dict[str, ServerConnections], found: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for the servers Prometheus knows, from the exporters this deploy would run there
    and the databases each discovered server lists now (``found``, by server entry name)."""
    exporters = Counter(db.server for db in settings.databases)
    users: dict[str, set[str]] = {}
    for db in settings.databases:
        users.setdefault(db.server, set()).add(db.user)
    refusals, warnings = [], []
    for server, held in sorted(exporters.items()):
        seen = known.get(server)
        if seen is None:
            continue
        ours_now = sum(seen.by_role.get(user, 0) for user in users[server])
        others = max(seen.clients - ours_now, 0)
        left = seen.slots - others
        where = (
            f"server {server}: pgmon's {held} exporter(s) there hold {held} connection(s) between scrapes and "
            f"up to {2 * held} while scraping, and {left} of its {seen.slots} slots for clients "
            f"(max_connections - superuser_reserved_connections) are not held by other clients now"
        )
        if held > left:
            refusals.append(
                f"pgmon_databases: {where}; nothing was changed. Raise max_connections there, list fewer of "
                "its databases, or watch them through one pgmon_servers entry, whose probes hold none "
                "between scrapes (docs/many-databases.md)"
            )
        elif 2 * held > left:
            warnings.append(f"WARNING {where}: while they scrape, other clients may be refused")
    for entry in settings.config.servers:
        seen = known.get(entry.server)
        if seen is None or not found.get(entry.name):
            continue
        if seen.role_limits.get(entry.user, -1) < 0:
            warnings.append(
                f"WARNING server {entry.name}: the probes of its {len(found[entry.name])} databases found "
                f"open two connections each, as many at once as the server is slow to answer: bound them "
                f"with ALTER ROLE {entry.user} CONNECTION LIMIT n, well under the {seen.slots} slots for "
                "clients (docs/many-databases.md)"
            )
    return refusals, warnings


def check_connection_budget(settings: Settings, host, found: dict[str, list[str]]) -> list[str]:
    """Refuse, before any change, a deploy whose exporters would not fit in a server's connections; the
    warnings to say otherwise. ``found``: the databases each discovered server lists now, by entry name."""
    http = HostHTTP(host)
    try:
        known = read_server_connections(settings, http)
    finally:
        http.close()
    refusals, warnings = budget_lines(settings, known, found)
    if refusals:
        raise DeployError("\n".join(refusals))
    return warnings
