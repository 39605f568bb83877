"""Property-based tests (issue 8): odd but plausible settings either are refused, or work, exactly.

What is generated (tests/unit/strategies.py): group_data with 1-3 databases and an environment of
secrets. Names, dbnames, users, label keys and values, the project name and the Grafana admin user
carry quotes, colons, ``$``, ``#``, ``@``, ``%``, spaces, unicode (non-ASCII digits too) and strings
YAML 1.1 and YAML 1.2 read differently (``059``, ``08``, ``1e3``, ``0o17``, ``yes``, ``null``, ``~``).
Durations include ``30s1m``, ``5m5m``, ``0d1w``, ``0s``, ``300y``; Telegram chat ids ``0``, 20 digits,
``١٢٣``; hosts ``/``, ``?``, ``#``, ``[``, ``@``, IPv6 literals (with a zone, or bracketed); label keys
``state``, ``mode``, ``user``, ``without``, ``inf``, ``nan``; base_dir ``/.``, ``/..``, ``/opt/..``,
``/srv/../etc``, ``/etc``; grafana_bind_address ``::1``; a Telegram api_url without scheme; a Discord
webhook variable holding no URL; a *_env setting holding a pasted secret. Invalid values are
generated on purpose.

The properties:

* ``build_settings`` raises ``DeployError`` (never any other exception) whose every problem line
  names a ``pgmon_`` field, and which repeats no secret (an environment value, or a secret pasted
  into a *_env setting); or
* the rendered files read back exactly as their consumers read them:
  - test_settings_and_render_read_back (pure Python, many examples): docker-compose.yml has no plain
    scalar that YAML 1.2 (Go yaml.v3, what Compose uses) reads as a non-string; each exporter's
    connection, as postgres_exporter builds its DSN from DATA_SOURCE_* and lib/pq reads it (Go's
    net/url) over the PG* variables and a PGPASSFILE, gives the configured host, port, dbname, user,
    password and sslmode, and the host is an IP address or a name Go's resolver looks up; targets
    JSON labels equal the configured labels plus pgmon's, are valid label names, and are none that
    postgres_exporter's series which pgmon's rules or dashboards read already carry; Telegram chat
    ids and api_url, Alertmanager's timings and the watchdog interval read back; the secret files
    Alertmanager and Grafana read (through the compose mounts) hold the secrets, the URLs ones
    being http(s) URLs; every configured duration means the same under Prometheus's grammar as
    under pgmon's; every configured threshold reads back in the rules; base_dir is a plain
    directory of its own (no '.' or '..' component, not '/' or a top-level system directory).
  - test_rendered_files_pass_the_tools (fewer examples, rendered ones only): promtool check config
    (which also checks the rule files and the targets file) and promtool check rules accept the
    files; amtool check-config accepts alertmanager.yml, also with the secret files' contents
    written inline (webhook_url, url: what Alertmanager demands of a URL given as a value); and
    ``docker compose config --format json`` accepts docker-compose.yml and reads back the project
    name, every service's environment, labels (``pgmon.revision``), container name, command and
    image as written (compose prints ``$`` re-escaped as ``$$``), the Grafana admin user and the
    Grafana port binding.

Examples: PGMON_HYPOTHESIS_EXAMPLES (default 300) for the pure test, a tenth of it (at least 10)
for the tool test. No example database is written; a passing test prints how many examples were
refused and how many rendered and were checked.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import ipaddress
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, assume, event, given, settings  # noqa: E402

from tasks.render import render_stack  # noqa: E402
from tasks.settings import DeployError, build_settings  # noqa: E402

from .strategies import Case, cases  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_STANDIN = Path(__file__).resolve().parents[1] / "e2e/images/grafana/standin.py"
_spec = importlib.util.spec_from_file_location("grafana_standin", _STANDIN)
grafana_standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(
    grafana_standin
)  # its interpolate() reads provisioning values as Grafana does
DASHBOARD_9628 = json.loads((FIXTURES / "dashboard-9628.json").read_text())

EXAMPLES = int(os.environ.get("PGMON_HYPOTHESIS_EXAMPLES", "300"))
TOOL_EXAMPLES = max(10, EXAMPLES // 10)
COMMON = dict(
    database=None,
    print_blob=False,
    # No explain phase: it reruns many examples only to list the lines failing examples ran.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

DEFAULT_TIMING = {
    "postgres_down_for": "1m",
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "4h",
}
SYSTEM_DIRS = {
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
}
PGMON_TARGET_LABELS = {"database", "server", "instance", "job", "__name__"}
# Labels postgres_exporter 0.17's collectors put on their series (pg_stat_activity, pg_locks, pg_stat_statements,
# the table collectors, pg_replication_slots, pg_scrape_collector_success, pg_static).
EXPORTER_SERIES_LABELS = {
    "datname",
    "state",
    "mode",
    "usename",
    "application_name",
    "backend_type",
    "wait_event_type",
    "queryid",
    "user",
    "schemaname",
    "relname",
    "indexrelname",
    "collector",
    "slot_name",
    "slot_type",
    "client_addr",
    "version",
    "short_version",
}


# ------------------------------------------------------------------ settings


def build(case: Case):
    """(settings, None), or (None, the DeployError message). Any other exception fails the test."""
    try:
        return build_settings(case.group_data, case.environ), None
    except DeployError as error:
        return None, str(error)


def _plain_strings(value, key: str = ""):
    """Strings in group_data outside *_env settings: a message may legitimately repeat those."""
    if isinstance(value, str):
        if not key.endswith("_env"):
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _plain_strings(k)
            yield from _plain_strings(v, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _plain_strings(v, key)


def check_refusal(case: Case, message: str) -> None:
    problems = [line[4:] for line in message.splitlines() if line.startswith("  - ")]
    assert problems, f"DeployError lists no problem:\n{message}"
    unnamed = [p for p in problems if not p.startswith("pgmon_")]
    assert not unnamed, f"DeployError lines that name no pgmon_ field: {unnamed}"
    plain = list(_plain_strings(case.group_data))
    leaked = sorted(
        s for s in case.secrets if len(s) >= 12 and s in message and not any(s in p for p in plain)
    )
    assert not leaked, f"DeployError repeats secret value(s) {leaked}:\n{message}"


# ------------------------------------------------------------------ how consumers read values

_GO_NULL_BOOL = {
    "",
    "~",
    "null",
    "Null",
    "NULL",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "<<",
}
_GO_SPECIAL_FLOATS = {sign + dot for sign in ("", "+", "-") for dot in (".inf", ".Inf", ".INF")} | {
    ".nan",
    ".NaN",
    ".NAN",
}
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?")


def go_yaml12_kind(plain: str) -> str:
    """What Go yaml.v3 (Compose) makes of an unquoted scalar decoded into interface{}: str, int, ..."""
    if plain in _GO_NULL_BOOL or plain in _GO_SPECIAL_FLOATS:
        return "null/bool/merge/float"
    if plain[:1] == ".":
        return "float" if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", plain) else "str"
    if plain[:1] not in tuple("+-0123456789"):
        return "str"
    if _GO_TIMESTAMP.fullmatch(plain):
        return "timestamp"
    digits = plain.replace("_", "")
    if _GO_INT.fullmatch(digits):
        return "int"
    if _YAML_STYLE_FLOAT.fullmatch(digits) and float(digits) not in (float("inf"), float("-inf")):
        return "float"
    return "str"


def yaml12_misreads(document: bytes) -> list[tuple[str, str]]:
    """(path, text) of every plain scalar PyYAML reads as a string but YAML 1.2 (Go yaml.v3) does not."""
    found = []

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(key, f"{path}.<key {key.value!r}>")
                walk(value, f"{path}.{key.value}")
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")
        elif node.style is None and node.tag == "tag:yaml.org,2002:str":
            kind = go_yaml12_kind(node.value)
            if kind != "str":
                found.append((path, f"{node.value!r} -> {kind}"))

    walk(yaml.compose(document, Loader=yaml.SafeLoader), "")
    return found


def _go_host_ok(host: str) -> bool:
    """Go's net/url unescape(host, encodeHost): which ASCII bytes a host may hold; '%' only as %XX."""
    i = 0
    while i < len(host):
        c = host[i]
        if c == "%":
            if not re.fullmatch(r"%[0-9a-fA-F]{2}", host[i : i + 3]) or (
                host[i + 1] < "8" and host[i : i + 3] != "%25"
            ):
                return False
            i += 3
            continue
        if ord(c) < 0x80 and not (c.isalnum() or c in "-_.~!$&'()*+,;=:[]<>\""):
            return False
        i += 1
    return True


_GO_USERINFO_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,;=")


def go_userinfo(user: str, password: str) -> str:
    """Go's url.UserPassword(user, password).String()."""

    def escape(text):
        return "".join(
            chr(b) if chr(b) in _GO_USERINFO_SAFE else f"%{b:02X}" for b in text.encode()
        )

    return f"{escape(user)}:{escape(password)}"


def _go_unescape(text: str) -> str | None:
    if re.search(r"%(?![0-9a-fA-F]{2})", text):
        return None
    return unquote(text)


def go_url_parse(url: str) -> dict | None:
    """The parts of a postgresql:// URL as Go's url.Parse and then lib/pq (net.SplitHostPort) read them;
    None where Go refuses the URL."""
    rest, _, fragment = url.partition("#")
    scheme, colon, rest = rest.partition(":")
    if not colon or not rest.startswith("//"):
        return None
    rest, _, query = rest.partition("?")
    authority, slash, path = rest[2:].partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and not re.fullmatch(r"[A-Za-z0-9\-._:~!$&'()*+,;=%@]*", userinfo):
        return None
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0 or not re.fullmatch(r"(:[0-9]*)?", host[end + 1 :]):
            return None
    elif ":" in host and not re.fullmatch(r"[0-9]*", host[host.rfind(":") + 1 :]):
        return None
    if not _go_host_ok(host):
        return None
    # net.SplitHostPort
    if host.startswith("["):
        end = host.find("]")
        if (
            end + 1 >= len(host)
            or host[end + 1] != ":"
            or "[" in host[1:end]
            or "]" in host[end + 1 :]
        ):
            return None
        name, port = host[1:end], host[end + 2 :]
    elif ":" in host:
        name, _, port = host.rpartition(":")
        if ":" in name or "[" in name or "]" in name:
            return None
    else:
        name, port = host, ""
    name = _go_unescape(name)
    user, _, password = userinfo.partition(":")
    user, password, path = _go_unescape(user), _go_unescape(password), _go_unescape(path)
    if None in (name, user, password, path):
        return None
    params = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key and ";" not in pair:
            params.setdefault(unquote(key.replace("+", " ")), unquote(value.replace("+", " ")))
    return {
        "host": name,
        "port": port,
        "dbname": path if slash else "",
        "user": user,
        "password": password,
        "params": params,
        "fragment": fragment,
    }


def pgpass_password(content: bytes, host: str, port: str, dbname: str, user: str) -> str | None:
    """lib/pq's lookup in a PGPASSFILE: the first line whose four fields match (or are '*')."""
    for line in content.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        fields, field, escaped = [], "", False
        for c in line:
            if escaped:
                field, escaped = field + c, False
            elif c == "\\":
                escaped = True
            elif c == ":":
                fields, field = fields + [field], ""
            else:
                field += c
        fields.append(field)
        if len(fields) == 5 and all(
            f in ("*", want) for f, want in zip(fields, (host, port, dbname, user), strict=False)
        ):
            return fields[4]
    return None


def container_file(
    compose: dict, service: str, path: str, base_dir: str, files: dict[str, bytes]
) -> bytes | None:
    """The content a service sees at ``path``, through its bind mounts of base_dir's folders."""
    base = posixpath.normpath(base_dir)
    for volume in compose["services"][service].get("volumes", []):
        if isinstance(volume, dict):  # the long syntax
            source, target = volume.get("source", "").replace("$$", "$"), volume.get("target", "")
        else:
            source, _, rest = volume.replace("$$", "$").partition(":")
            target = rest.split(":")[0]
        source = (
            posixpath.normpath(source) if source.startswith("/") else source
        )  # the engine's reading
        relative = (
            source[2:]
            if source.startswith("./")
            else source[len(base) + 1 :]
            if source.startswith(base + "/")
            else None
        )
        if relative is not None and path.startswith(target.rstrip("/") + "/"):
            return files.get(posixpath.normpath(relative + path[len(target.rstrip("/")) :]))
    return None


def exporter_connection(
    compose: dict, service: str, base_dir: str, files: dict[str, bytes]
) -> dict | None:
    """The host, port, dbname, user, password and sslmode a postgres_exporter service connects with: the DSN
    postgres_exporter builds from DATA_SOURCE_* (its getDataSources), read by lib/pq over the PG* variables."""
    env = {
        k: v.replace("$$", "$")
        for k, v in (compose["services"][service].get("environment") or {}).items()
        if isinstance(v, str)
    }

    def read(path):
        content = container_file(compose, service, path, base_dir, files)
        return None if content is None else content.decode()

    if env.get("DATA_SOURCE_NAME"):
        dsn = env["DATA_SOURCE_NAME"]
    else:
        user = (
            (read(env["DATA_SOURCE_USER_FILE"]) or "").strip()
            if "DATA_SOURCE_USER_FILE" in env
            else env.get("DATA_SOURCE_USER", "")
        )
        password = (
            (read(env["DATA_SOURCE_PASS_FILE"]) or "").strip()
            if "DATA_SOURCE_PASS_FILE" in env
            else env.get("DATA_SOURCE_PASS", "")
        )
        dsn = f"postgresql://{go_userinfo(user, password)}@{env.get('DATA_SOURCE_URI', '')}"
    url = go_url_parse(dsn)
    if url is None or url["fragment"]:
        return None
    connection = {
        "host": env.get("PGHOST", ""),
        "port": env.get("PGPORT", "5432"),
        "dbname": env.get("PGDATABASE", ""),
        "user": env.get("PGUSER", ""),
        "password": env.get("PGPASSWORD"),
        "sslmode": env.get("PGSSLMODE", "prefer"),
    }
    for key in ("host", "port", "dbname", "user", "password"):
        if url[key]:
            connection[key] = url[key]
    connection.update({k: v for k, v in url["params"].items() if v})
    if connection["password"] is None and env.get("PGPASSFILE"):
        passfile = read(env["PGPASSFILE"])
        connection["password"] = passfile and pgpass_password(
            passfile.encode(),
            connection["host"],
            connection["port"],
            connection["dbname"],
            connection["user"],
        )
    return connection


def _go_is_domain_name(s: str) -> bool:
    """Go's net.isDomainName: what its resolver agrees to look up."""
    if not s or len(s) > 254 or (len(s) == 254 and not s.endswith(".")):
        return False
    last, non_numeric, part = ".", False, 0
    for c in s:
        if "a" <= c.lower() <= "z" or c == "_":
            non_numeric, part = True, part + 1
        elif "0" <= c <= "9":
            part += 1
        elif c == "-":
            if last == ".":
                return False
            non_numeric, part = True, part + 1
        elif c == ".":
            if last in ".-" or part == 0 or part > 63:
                return False
            part = 0
        else:
            return False
        last = c
    return last != "-" and part <= 63 and non_numeric


def alertmanager_url_ok(url: str) -> bool:
    """Alertmanager's parseURL: an http(s) URL with a host."""
    match = re.fullmatch(r"(https?)://([^/?#]*)([/?#].*)?", url.strip(), re.S)
    return bool(match and match.group(2).rpartition("@")[2])


_PROM_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?"
    r"(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_UNIT_MS = (31536000000, 604800000, 86400000, 3600000, 60000, 1000, 1)


def prometheus_duration_ms(text: str) -> int | None:
    """Prometheus's model.ParseDuration (Prometheus, Alertmanager): milliseconds, or None if refused."""
    if text == "0":
        return 0
    match = _PROM_DURATION.fullmatch(text) if text and "\n" not in text else None
    if not match:
        return None
    total = sum(
        int(n) * unit for n, unit in zip(match.groups(), _UNIT_MS, strict=False) if n is not None
    )
    return total if total * 1_000_000 <= 2**63 - 1 else None


def pgmon_duration_ms(text: str) -> int:
    """What pgmon's own checks (e.g. 'at least 4 scrapes') take a duration to mean."""
    units = {
        "ms": 1,
        "s": 1000,
        "m": 60000,
        "h": 3600000,
        "d": 86400000,
        "w": 604800000,
        "y": 31536000000,
    }
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text))


def _database_entries(case: Case) -> list[dict]:
    return case.group_data["pgmon_databases"]


def configured_durations(case: Case) -> list[tuple[str, str]]:
    data = case.group_data
    found = [(f"pgmon_alert_timing.{k}", v) for k, v in data.get("pgmon_alert_timing", {}).items()]
    found += [
        (f"pgmon_alert_thresholds.{k}", v)
        for k, v in data.get("pgmon_alert_thresholds", {}).items()
        if k.endswith(("_for", "_window"))
    ]
    for index, db in enumerate(_database_entries(case)):
        found += [
            (f"pgmon_databases[{index}].alert_thresholds.{k}", v)
            for k, v in db.get("alert_thresholds", {}).items()
            if k.endswith(("_for", "_window"))
        ]
    if "interval" in data.get("pgmon_watchdog", {}):
        found.append(("pgmon_watchdog.interval", data["pgmon_watchdog"]["interval"]))
    return found


# ------------------------------------------------------------------ reading the rules back

_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'')
_NUMBER = re.compile(
    r"(?<![\w.:])([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+|[Ii]nf|NaN|nan)(?![\w.\]])"
)


def rule_readback(files: dict[str, bytes]) -> tuple[set[float], set[str]]:
    """Every number in the alert expressions, and every `for` and range duration."""
    numbers, durations = set(), set()
    for group in yaml.safe_load(files["prometheus/rules/pgmon.rules.yml"])["groups"]:
        for rule in group["rules"]:
            durations.add(str(rule.get("for", "")))
            expr = rule["expr"]
            durations.update(
                re.findall(r"\[([^\]:]+)(?::[^\]]*)?\]", _STRING_LITERAL.sub('""', expr))
            )
            numbers.update(float(n) for n in _NUMBER.findall(_STRING_LITERAL.sub('""', expr)))
    return numbers, durations


def expected_threshold_readbacks(case: Case) -> list[tuple[str, object]]:
    """(where, value) of every configured threshold that some rule must carry: each database's own,
    and each global one that some database (or the processing host) still uses."""
    dbs = _database_entries(case)
    own = [db.get("alert_thresholds", {}) for db in dbs]
    server_keys = {
        "connections_percent",
        "connections_for",
        "replication_lag_seconds",
        "replication_lag_for",
        "wraparound_percent",
        "wraparound_for",
        "restart_window",
    }

    def server(db):
        return (db["host"], int(db.get("port", 5432)))

    expected = []
    for key, value in case.group_data.get("pgmon_alert_thresholds", {}).items():
        used = key.startswith("host_") or any(
            key not in own[i]
            and not (
                key in server_keys
                and any(key in own[j] for j in range(len(dbs)) if server(dbs[j]) == server(db))
            )
            for i, db in enumerate(dbs)
        )
        if used:
            expected.append((f"pgmon_alert_thresholds.{key}", value))
    for index, thresholds in enumerate(own):
        expected += [
            (f"pgmon_databases[{index}].alert_thresholds.{k}", v) for k, v in thresholds.items()
        ]
    timing = case.group_data.get("pgmon_alert_timing", {})
    if "postgres_down_for" in timing:
        expected.append(("pgmon_alert_timing.postgres_down_for", timing["postgres_down_for"]))
    return expected


def _exprs(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("expr", "query") and isinstance(v, str):
                yield v
            else:
                yield from _exprs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _exprs(v)


def exporter_labels_read(files: dict[str, bytes]) -> set[str]:
    """Label names that pgmon's rules and dashboards select or group postgres_exporter series (pg_*) by."""
    exprs = []
    for path, content in files.items():
        if path.startswith("prometheus/rules/"):
            exprs += list(_exprs(yaml.safe_load(content)))
        elif path.startswith("grafana/dashboards/"):
            exprs += list(_exprs(json.loads(content)))
    names = set()
    for expr in exprs:
        if "pg_" not in expr:
            continue
        bare = _STRING_LITERAL.sub('""', expr)
        for selector in re.findall(r"\bpg_\w*\{([^}]*)\}", bare):
            names.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", bare):
            names.update(n.strip() for n in clause.split(",") if n.strip())
    return (names - PGMON_TARGET_LABELS) & EXPORTER_SERIES_LABELS


# ------------------------------------------------------------------ the pure-Python readback


def check_stack(case: Case, stack) -> None:
    data, env = case.group_data, case.environ
    files = {f.path: f.content for f in stack.files}
    dbs = _database_entries(case)

    base = data.get("pgmon_base_dir", "/opt/pgmon")
    parts = [p for p in base.split("/") if p]
    resolved = posixpath.normpath("/" + "/".join(parts))
    assert "." not in parts and ".." not in parts and resolved not in SYSTEM_DIRS, (
        f"base_dir {base!r} accepted: it is {resolved!r}, whose prometheus/, alertmanager/ and grafana/ "
        "pgmon would prune"
    )

    misread = yaml12_misreads(files["docker-compose.yml"])
    assert not misread, (
        f"docker-compose.yml: plain scalars YAML 1.2 (Compose) reads as non-strings: {misread}"
    )

    compose = yaml.safe_load(files["docker-compose.yml"])
    project = data.get("pgmon_project", "pgmon")
    assert compose["name"] == project
    assert compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_USER"] == data.get(
        "pgmon_grafana_admin_user", "admin"
    ).replace("$", "$$")

    admin_password_file = compose["services"]["grafana"]["environment"][
        "GF_SECURITY_ADMIN_PASSWORD__FILE"
    ]
    admin_password = container_file(compose, "grafana", admin_password_file, base, files)
    assert admin_password is not None and admin_password.decode().strip() == env["GRAFANA_PW"], (
        f"Grafana's admin password file holds {admin_password!r}; Grafana reads it trimmed"
    )

    key_file = compose["services"]["grafana"]["environment"].get("GF_SECURITY_SECRET_KEY__FILE")
    key = key_file and container_file(compose, "grafana", key_file, base, files)
    if data["pgmon_grafana_secret_key_env"] is None:
        assert key_file is None, (
            "Grafana is given a key file while the setting asks for its default"
        )
    else:
        assert key == env["GRAFANA_KEY"].encode(), f"Grafana's secret_key file holds {key!r}"

    for db in dbs:
        host, port = db["host"], int(db.get("port", 5432))
        want_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        want = {
            "host": want_host,
            "port": str(port),
            "dbname": db["dbname"],
            "user": db["user"],
            "password": env[db["password_env"]],
            "sslmode": db.get("sslmode", "require"),
        }
        got = exporter_connection(compose, f"exporter-{db['name']}", base, files)
        got = got and {key: got.get(key) for key in want}
        assert got == want, (
            f"exporter of {db['name']!r} (host {host!r}): configured {want}, postgres_exporter and lib/pq read "
            f"{got} (None: Go's net/url refuses the DSN)"
        )
        resolvable = _go_is_domain_name(want_host)
        try:
            ipaddress.ip_address(want_host)
            resolvable = True
        except ValueError:
            pass
        assert resolvable, f"host {host!r} accepted, but it is neither an IP address nor a DNS name"

    targets = json.loads(files["prometheus/targets/postgres.json"])
    by_database = {t["labels"]["database"]: t["labels"] for t in targets}
    for db in dbs:
        host, port = db["host"], int(db.get("port", 5432))
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        server = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"
        expected = {
            **db.get("labels", {}),
            "database": db["name"],
            "server": server,
            "instance": db["name"],
        }
        assert by_database[db["name"]] == expected
    bad_names = sorted(
        {k for t in targets for k in t["labels"] if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k)}
    )
    assert not bad_names, f"targets JSON: {bad_names} are not Prometheus label names"
    shadowed = sorted({k for db in dbs for k in db.get("labels", {})} & exporter_labels_read(files))
    assert not shadowed, (
        f"labels {shadowed} accepted: postgres_exporter's series carry them and pgmon's rules or dashboards read "
        f"them; as target labels they replace the exporter's (renamed exported_*)"
    )

    am = yaml.safe_load(files["alertmanager/alertmanager.yml"])
    timing = {**DEFAULT_TIMING, **data.get("pgmon_alert_timing", {})}
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert am["route"][key] == timing[key]
    receivers = {r["name"]: r for r in am["receivers"]}

    def alertmanager_file(path: str) -> str | None:
        content = container_file(compose, "alertmanager", path, base, files)
        return (
            None if content is None else content.decode().strip()
        )  # Alertmanager trims what it reads

    if "pgmon_telegram" in data:
        configs = receivers["telegram"]["telegram_configs"]
        entries = list(dict.fromkeys(entry.strip() for entry in env["TG_CHAT"].split(",")))
        chat_ids = [
            str(c["chat_id"]) if "chat_id" in c else alertmanager_file(c["chat_id_file"])
            for c in configs
        ]
        assert chat_ids == entries, f"chat ids {env['TG_CHAT']!r} read back as {chat_ids}"
        api_url = data["pgmon_telegram"].get("api_url", "https://api.telegram.org")
        assert all(c["api_url"].rstrip("/") == api_url.rstrip("/") for c in configs)
        assert alertmanager_url_ok(api_url), (
            f"Telegram api_url {api_url!r} accepted: Alertmanager refuses it"
        )

    def secret_file(receiver: str, kind: str, key: str) -> str | None:
        return alertmanager_file(receivers[receiver][kind][0][key])

    if "pgmon_discord" in data:
        url = secret_file("discord", "discord_configs", "webhook_url_file")
        assert url == env["DISCORD_URL"].strip()
        assert alertmanager_url_ok(url), (
            f"Discord webhook {url!r} accepted: Alertmanager cannot post to it"
        )
    if "pgmon_watchdog" in data:
        url = secret_file("watchdog", "webhook_configs", "url_file")
        assert url == env["WD_URL"].strip()
        assert alertmanager_url_ok(url), (
            f"watchdog URL {url!r} accepted: Alertmanager cannot post to it"
        )
        interval = data["pgmon_watchdog"].get("interval", "1m")
        watchdog_route = next(r for r in am["route"]["routes"] if r["receiver"] == "watchdog")
        assert watchdog_route["repeat_interval"] == interval

    check_stores(case, compose, files)
    external = yaml.safe_load(files["prometheus/prometheus.yml"])["global"].get(
        "external_labels", {}
    )
    assert external == data.get("pgmon_external_labels", {})

    differing = [
        (where, d, prometheus_duration_ms(d), pgmon_duration_ms(d))
        for where, d in configured_durations(case)
        if prometheus_duration_ms(d) != pgmon_duration_ms(d)
    ]
    assert not differing, (
        f"durations accepted that Prometheus/Alertmanager refuse (None) or read otherwise: {differing}"
    )

    numbers, durations = rule_readback(files)
    missing = []
    for where, value in expected_threshold_readbacks(case):
        if where.endswith(("_for", "_window")):
            if value not in durations:
                missing.append((where, value))
        elif float(value) not in numbers:
            missing.append((where, value))
    assert not missing, f"configured thresholds not found in the rules: {missing}"


def check_stores(case: Case, compose: dict, files: dict[str, bytes]) -> None:
    """Each store reads back from prometheus.yml and Grafana's data sources as configured, its secret only in
    the files the two containers read."""
    data, env = case.group_data, case.environ
    base = data.get("pgmon_base_dir", "/opt/pgmon")
    prometheus = yaml.safe_load(files["prometheus/prometheus.yml"])
    datasources = {
        d["uid"]: d
        for d in yaml.safe_load(files["grafana/provisioning/datasources/pgmon.yml"])["datasources"]
    }
    written = {w["name"]: w for w in prometheus.get("remote_write", [])}
    stores = data.get("pgmon_remote_write", [])
    assert sorted(written) == sorted(s["name"] for s in stores)
    for store in stores:
        got = written[store["name"]]
        assert got["url"] == store["url"].rstrip("/") and got.get("headers", {}) == store.get(
            "headers", {}
        )
        assert not any(h.lower() == "authorization" for h in got.get("headers", {}))
        assert "@" not in got["url"].split("/")[2], f"store URL {got['url']!r} carries credentials"
        secret = env.get(store.get("password_env") or store.get("bearer_token_env") or "", None)
        if "password_env" in store:
            auth = got["basic_auth"]
            assert auth["username"] == store["username"]
            path = auth["password_file"]
        elif "bearer_token_env" in store:
            path = got["authorization"]["credentials_file"]
        else:
            assert "basic_auth" not in got and "authorization" not in got
            path = None
        if path is not None:
            content = container_file(compose, "prometheus", path, base, files)
            assert content is not None and content.decode().strip() == secret  # Prometheus trims
        if secret and len(secret) >= 12:  # a shorter one may be in any text by chance
            assert secret.encode() not in files["prometheus/prometheus.yml"]
            assert secret.encode() not in files["grafana/provisioning/datasources/pgmon.yml"]
        source = datasources.get(f"pgmon-store-{store['name']}")
        if "query_url" not in store:
            assert source is None
            continue

        # Grafana's reading (the stand-in's, left to right): $$ a literal $, $__file{...} the file's content, trimmed.
        def grafana(value: str) -> str:
            def expand(match: re.Match) -> str:
                if match.group(1) != "file":
                    return grafana_standin.interpolate(match.group(0), {})
                content = container_file(compose, "grafana", match.group(2), base, files)
                assert content is not None, (
                    f"Grafana's data source names {match.group(2)}, unreadable"
                )
                return content.decode().strip()

            return grafana_standin._EXPAND.sub(expand, value)

        assert grafana(source["url"]) == store["query_url"].rstrip("/")
        secure = source.get("secureJsonData", {})
        headers = {
            grafana(source["jsonData"][key]): grafana(secure[key.replace("Name", "Value")])
            for key in source["jsonData"]
            if key.startswith("httpHeaderName")
        }
        expected = dict(store.get("headers", {}))
        if "bearer_token_env" in store:
            expected["Authorization"] = f"Bearer {secret}"
        assert headers == expected
        if "password_env" in store:
            assert (
                source["basicAuth"] is True
                and grafana(source["basicAuthUser"]) == store["username"]
            )
            assert grafana(secure["basicAuthPassword"]) == secret
        else:
            assert source["basicAuth"] is False


def test_settings_and_render_read_back(capsys):
    counts = Counter()

    @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), **COMMON)
    @given(case=cases())
    def run(case: Case):
        stack_settings, message = build(case)
        if message is not None:
            counts["refused"] += 1
            event("refused")
            check_refusal(case, message)
            return
        counts["rendered"] += 1
        event("rendered")
        check_stack(case, render_stack(stack_settings, DASHBOARD_9628))

    run()
    with capsys.disabled():
        print(
            f"\n[properties] settings+render: {sum(counts.values())} examples, {counts['refused']} refused "
            f"with a DeployError, {counts['rendered']} rendered and read back"
        )


def test_stores_read_back_and_pass_promtool(capsys):
    """Cases that always have pgmon_remote_write and pgmon_external_labels: rare among the others, and what
    Prometheus refuses in a store (a header, a URL) or a label value only promtool tells."""
    counts = Counter()

    @settings(max_examples=max(30, EXAMPLES // 3), deadline=timedelta(seconds=60), **COMMON)
    @given(case=cases(always=frozenset({"remote_write", "external_labels"})))
    def run(case: Case):
        stack_settings, message = build(case)
        if message is not None:
            counts["refused"] += 1
            check_refusal(case, message)
            return
        counts["rendered"] += 1
        stack = render_stack(stack_settings, DASHBOARD_9628)
        check_stack(case, stack)
        if shutil.which("promtool"):
            root = fresh_tree()
            write_tree(stack, root)
            code, out = run_tools(root, only="promtool check config")["promtool check config"]
            assert code == 0 and "WARNING" not in out, f"promtool check config:\n{out}"
            counts["promtool"] += 1

    run()
    with capsys.disabled():
        print(
            f"\n[properties] stores: {sum(counts.values()) - counts['promtool']} examples, {counts['refused']} "
            f"refused, {counts['rendered']} rendered and read back, {counts['promtool']} checked by promtool"
        )


# ------------------------------------------------------------------ the external tools


def write_tree(stack, root: Path) -> None:
    for f in stack.files:
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.content)
    for config, prefix, local in (
        ("prometheus/prometheus.yml", "/etc/prometheus/", "prometheus"),
        ("alertmanager/alertmanager.yml", "/etc/alertmanager/", "alertmanager"),
    ):
        path = root / config
        path.write_text(path.read_text().replace(prefix, f"{root / local}/"))


def alertmanager_with_inline_secrets(root: Path) -> Path:
    """alertmanager.yml with the URLs and chat ids of the *_file secrets written inline, as Alertmanager would
    judge them given as values."""
    config = yaml.safe_load((root / "alertmanager/alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for kind, key, inline in (
            ("discord_configs", "webhook_url_file", "webhook_url"),
            ("webhook_configs", "url_file", "url"),
            ("telegram_configs", "chat_id_file", "chat_id"),
        ):
            for item in receiver.get(kind, []):
                if key in item:
                    value = Path(item.pop(key)).read_text().strip()
                    item[inline] = (
                        int(value)
                        if inline == "chat_id" and re.fullmatch(r"-?[0-9]+", value)
                        else value
                    )
    path = root / "alertmanager-inline.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


_TOOL_CACHE: dict[str, tuple[int, str]] = {}
# One tree for every example, emptied in between: the files (and the tools' output) then name the same paths,
# so identical files, frequent while Hypothesis shrinks, reuse the tools' earlier verdicts.
_TREE = Path(tempfile.mkdtemp(prefix="pgmon-properties-"))
atexit.register(shutil.rmtree, _TREE, True)


def fresh_tree() -> Path:
    shutil.rmtree(_TREE, ignore_errors=True)
    _TREE.mkdir()
    return _TREE


def run_tools(root: Path, only: str | None = None) -> dict[str, tuple[int, str]]:
    """Each check's (return code, output), the checks run side by side; cached by the files they read.
    ``only``: that check alone."""
    compose_env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    inline = alertmanager_with_inline_secrets(root)

    def digest(*paths):
        h = hashlib.sha256()
        for p in paths:
            for f in sorted(Path(p).rglob("*")) if Path(p).is_dir() else [Path(p)]:
                if f.is_file():
                    h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    commands = {
        "promtool check config": (
            ["promtool", "check", "config", str(root / "prometheus/prometheus.yml")],
            None,
            digest(root / "prometheus"),
        ),
        "promtool check rules": (
            [
                "promtool",
                "check",
                "rules",
                str(root / "prometheus/rules/pgmon.rules.yml"),
                str(root / "prometheus/rules/pgmon.recording.yml"),
            ],
            None,
            digest(root / "prometheus/rules"),
        ),
        "amtool check-config": (
            ["amtool", "check-config", str(root / "alertmanager/alertmanager.yml")],
            None,
            digest(root / "alertmanager"),
        ),
        "amtool check-config (secrets inline)": (
            ["amtool", "check-config", str(inline)],
            None,
            digest(inline),
        ),
        "docker compose config": (
            ["docker", "compose", "config", "--format", "json"],
            compose_env,
            digest(root / "docker-compose.yml"),
        ),
    }
    if only is not None:
        commands = {only: commands[only]}
    results, running = {}, {}
    for name, (argv, env, key) in commands.items():
        key = name + key
        if key in _TOOL_CACHE:
            results[name] = _TOOL_CACHE[key]
        else:
            running[name] = (
                key,
                subprocess.Popen(
                    argv,
                    cwd=root,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
    for name, (key, process) in running.items():
        out, err = process.communicate(timeout=120)
        output = (out + ("\n" if out and err else "") + err).replace(str(root), "<tree>")
        results[name] = _TOOL_CACHE[key] = (process.returncode, output)
    return results


needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("promtool", "amtool", "docker")),
    reason="promtool, amtool and docker (compose plugin): run tests/e2e/prepare_machine.sh",
)


def check_with_tools(case: Case, stack, root: Path) -> None:
    data = case.group_data
    write_tree(stack, root)
    results = run_tools(root)

    code, out = results["promtool check config"]
    assert code == 0 and "WARNING" not in out, f"promtool check config:\n{out}"
    code, out = results["promtool check rules"]
    assert code == 0 and "WARNING" not in out, f"promtool check rules:\n{out}"
    code, out = results["amtool check-config"]
    assert code == 0, f"amtool check-config:\n{out}"
    code, out = results["amtool check-config (secrets inline)"]
    assert code == 0, f"amtool check-config, secret files' contents inline:\n{out}"
    code, out = results["docker compose config"]
    assert code == 0, f"docker compose config:\n{out}"

    composed = json.loads(out[out.find("{") : out.rfind("}") + 1])
    written = yaml.safe_load((root / "docker-compose.yml").read_text())
    project = data.get("pgmon_project", "pgmon")
    assert composed["name"] == project, f"project {project!r} reads back as {composed['name']!r}"
    # Every string Compose keeps as written: what `config` prints (re-escaped) equals what the file says.
    differing = []
    for name, service in written["services"].items():
        got = composed["services"][name]
        for key in ("environment", "labels"):
            for var, value in (service.get(key) or {}).items():
                if got.get(key, {}).get(var) != value:
                    differing.append((name, key, var, value, got.get(key, {}).get(var)))
        for key in ("container_name", "command", "image"):
            if got.get(key) != service.get(key):
                differing.append((name, key, service.get(key), got.get(key)))
    assert not differing, f"docker compose config reads back otherwise than written: {differing}"
    admin = data.get("pgmon_grafana_admin_user", "admin")
    got = composed["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_USER"]
    assert got == admin.replace("$", "$$"), f"Grafana admin user {admin!r} reads back as {got!r}"
    bind = data.get("pgmon_grafana_bind_address", "0.0.0.0")
    ports = composed["services"]["grafana"]["ports"]
    assert [(p.get("host_ip"), p["published"], p["target"]) for p in ports] == [
        (bind, str(data.get("pgmon_grafana_port", 3000)), 3000)
    ], f"Grafana bound to {bind!r} reads back as {ports}"


@needs_tools
def test_rendered_files_pass_the_tools(capsys):
    counts = Counter()

    @settings(max_examples=TOOL_EXAMPLES, deadline=timedelta(seconds=60), **COMMON)
    @given(case=cases())
    def run(case: Case):
        stack_settings, message = build(case)
        if message is not None:
            counts["refused"] += 1
            assume(
                False
            )  # not an example for the tools: the refusal's properties are the other test's
        counts["checked"] += 1
        event("checked by the tools")
        check_with_tools(case, render_stack(stack_settings, DASHBOARD_9628), fresh_tree())

    run()
    with capsys.disabled():
        print(
            f"\n[properties] tools: {counts['checked']} rendered examples checked by promtool, amtool and "
            f"docker compose config ({counts['refused']} refused examples skipped)"
        )
