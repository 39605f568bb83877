"""pgmon_servers: the settings, what is rendered for a discovered server, and discover.sh run by busybox
(the shell of postgres_exporter's image) against an exporter's metrics as client_golang prints them."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tasks.render import render_stack
from tasks.render.compose import compose_services
from tasks.render.discovery import DISCOVER_SCRIPT, LISTED_METRIC, discovery_query, sql_string
from tasks.render.exporters import TABLE_QUERIES
from tasks.render.prometheus import render_prometheus_config, render_rules
from tasks.settings import DeployError, build_settings
from tasks.settings.discovery import LONGEST_PROBE_INTERVAL
from tasks.verify_databases import (
    PROBES_PER_SECOND_HELD,
    describe_discovered,
    probe_rate_warning,
)

from .conftest import ENVIRON, group_data

SERVER = {
    "name": "tenants",
    "host": "db1",
    "user": "mon",
    "password_env": "PW_BILLING",
    "include": ["t_.*", "it's"],
    "labels": {"team": "x"},
}


def with_server(**changes):
    return build_settings(group_data(pgmon_servers=[{**SERVER, **changes}]), ENVIRON)


def refusal(data) -> str:
    with pytest.raises(DeployError) as error:
        build_settings(data, {**ENVIRON, "PW_SPACE": "two words"})
    return str(error.value)


def test_a_server_alone_is_enough_to_deploy():
    settings = build_settings(group_data(pgmon_databases=[], pgmon_servers=[SERVER]), ENVIRON)
    assert [db.name for db in settings.databases] == ["tenants"]
    assert settings.databases[0].dbname == "postgres"
    assert settings.database_passwords["tenants"].get_secret_value() == ENVIRON["PW_BILLING"]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ([{**SERVER, "name": "shop"}], "the name 'shop' is used twice"),
        ([SERVER, {**SERVER, "name": "other"}], "servers: db1:5432 is listed twice"),
        ([{**SERVER, "include": ["t_(.*"]}], "pgmon_servers[0].include[0]"),
        ([{**SERVER, "include": []}], "pgmon_servers[0].include"),
        ([{**SERVER, "labels": {"tenant": "a"}}], "label 'tenant' is set by pgmon itself"),
        ([{**SERVER, "password_env": "PW_MISSING"}], "pgmon_servers[0].password_env (tenants)"),
        ([{**SERVER, "password_env": "PW_SPACE"}], "holds a space"),
        (
            [{**SERVER, "scrape_interval_seconds": 10}],
            "servers[0].scrape_interval_seconds: 10 is shorter than pgmon_scrape_interval_seconds (15)",
        ),
        ([{**SERVER, "scrape_interval_seconds": 301}], "pgmon_servers[0].scrape_interval_seconds"),
    ],
)
def test_bad_server_entries_are_refused_naming_the_field(servers, expected):
    assert expected in refusal(group_data(pgmon_servers=servers))


def test_a_server_of_many_databases_can_have_them_probed_less_often():
    default = with_server()
    assert "__scrape_interval__" not in discovery_query(default, default.config.servers[0])["query"]
    slower = with_server(scrape_interval_seconds=60)
    query = discovery_query(slower, slower.config.servers[0])["query"]
    assert '"__scrape_interval__": "60s"' in query
    # A window must hold 4 of the slower scrapes too.
    message = refusal(
        group_data(
            pgmon_servers=[{**SERVER, "scrape_interval_seconds": 60}],
            pgmon_alert_thresholds={"deadlocks_window": "3m"},
        )
    )
    assert (
        "alert_thresholds.deadlocks_window: '3m' holds fewer than 4 scrapes (60s apart)" in message
    )


def test_the_deploy_says_what_each_server_lists_and_warns_where_probing_them_all_is_too_fast():
    """500 every 15 s (33 probes a second) is what collapsed on the benchmark's host; 200 every 15 s held."""
    settings = with_server()  # pgmon_scrape_interval_seconds: 15
    labels = [f"tenants/t_{i:03d}" for i in range(500)]
    assert describe_discovered(settings, {}) == [
        "server tenants: not listed on the host yet (db1:5432)"
    ]
    (listed, warning) = describe_discovered(settings, {"tenants": labels})
    assert listed.startswith(
        "server tenants: 500 databases listed on the host now (db1:5432): t_000, "
    )
    assert listed.endswith("and 480 more")
    assert warning.startswith(
        "WARNING server tenants: 500 databases probed every 15 s is 33 probes a second"
    )
    assert '"scrape_interval_seconds": 38 or more on its entry' in warning
    assert len(describe_discovered(settings, {"tenants": labels[:200]})) == 1
    slower = with_server(scrape_interval_seconds=60)
    assert len(describe_discovered(slower, {"tenants": labels})) == 1


@given(
    count=st.integers(0, 10_000),
    interval=st.integers(1, LONGEST_PROBE_INTERVAL),
)
def test_the_advised_interval_is_one_the_warning_would_not_repeat(count, interval):
    warning = probe_rate_warning("tenants", count, interval)
    if warning is None:
        assert count / interval <= PROBES_PER_SECOND_HELD
    elif "exclude patterns" in warning:
        assert count / LONGEST_PROBE_INTERVAL > PROBES_PER_SECOND_HELD
    else:
        advised = int(warning.split('"scrape_interval_seconds": ')[1].split()[0])
        assert interval < advised <= LONGEST_PROBE_INTERVAL
        assert probe_rate_warning("tenants", count, advised) is None


def test_the_server_gets_its_own_exporter_writing_the_list_and_one_probing_its_databases():
    settings = with_server()
    services = compose_services(settings)
    own, probe = services["exporter-tenants"], services["tenants-tenants"]
    assert own["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert "discover.sh /discovered/tenants.json 15 " in own["entrypoint"][2]
    assert own["entrypoint"][2].endswith('exec /bin/postgres_exporter "$@"')
    assert "/opt/pgmon/discovered:/discovered" in own["volumes"]
    assert "/opt/pgmon/discovered:/discovered:ro" in services["prometheus"]["volumes"]
    # Per-database collectors only: the server-wide ones run once, in the server's first exporter.
    assert "--disable-default-metrics" in probe["command"]
    assert "--config.file=/etc/postgres_exporter/auth.yml" in probe["command"]
    assert "environment" not in probe and "entrypoint" not in probe
    assert probe["user"] == own["user"]


def test_light_patterns_send_their_databases_to_a_prober_without_table_collectors():
    settings = with_server(light=["t_big.*"])
    services = compose_services(settings)
    light, full = services["light-tenants"], services["tenants-tenants"]
    assert "--no-collector.stat_user_tables" in light["command"]
    assert "--no-collector.stat_user_tables" not in full["command"]
    assert light["volumes"] == full["volumes"]  # one login, one folder
    files = {f.path: f for f in render_stack(settings, {"panels": []}).files}
    assert files["tenants/tenants/auth.yml"].on_change == (
        "restart:tenants-tenants",
        "restart:light-tenants",
    )
    query = yaml.safe_load(files["exporters/tenants/queries.yaml"].content)["pgmon_discovery"]
    assert (
        "CASE WHEN datname ~ E'^(?:(?:t_big.*))$' THEN E'light-tenants:9187' "
        "ELSE E'tenants-tenants:9187' END" in query["query"]
    )
    assert "--extend.query-path=/etc/postgres_exporter/light-queries.yaml" in light["command"]
    assert set(TABLE_QUERIES) <= set(yaml.safe_load(files["tenants/tenants/queries.yaml"].content))
    light_queries = yaml.safe_load(files["tenants/tenants/light-queries.yaml"].content)
    assert not set(TABLE_QUERIES) & set(light_queries)
    assert "light-tenants" not in compose_services(with_server())
    assert "tenants/tenants/light-queries.yaml" not in {
        f.path for f in render_stack(with_server(), {"panels": []}).files
    }


def test_the_probing_login_is_a_file_only_its_exporter_reads():
    settings = with_server()
    files = {f.path: f for f in render_stack(settings, {"panels": []}).files}
    auth = files["tenants/tenants/auth.yml"]
    assert (auth.mode, auth.secret) == (0o400, True)
    module = yaml.safe_load(auth.content)["auth_modules"]["tenants"]
    assert module["userpass"] == {"username": "mon", "password": ENVIRON["PW_BILLING"]}
    assert module["options"] == {"sslmode": "require"}
    everything_else = b"".join(c for p, f in files.items() if not f.secret for c in [f.content])
    assert ENVIRON["PW_BILLING"].encode() not in everything_else
    assert files["exporters/tenants/discover.sh"].content == DISCOVER_SCRIPT.read_bytes()


def test_prometheus_reads_each_servers_list_and_drops_the_listing_json():
    config = yaml.safe_load(render_prometheus_config(with_server()))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "postgres"]
    assert job["file_sd_configs"][0]["files"] == [
        "/etc/prometheus/targets/postgres.json",
        "/discovered/tenants.json",
    ]
    assert job["metric_relabel_configs"] == [{"action": "labeldrop", "regex": "target_group"}]
    plain = yaml.safe_load(render_prometheus_config(build_settings(group_data(), ENVIRON)))
    assert "metric_relabel_configs" not in plain["scrape_configs"][2]


def test_databases_listed_or_watched_by_the_server_exporter_are_not_probed_again():
    files = {f.path: f.content for f in render_stack(with_server(), {"panels": []}).files}
    query = yaml.safe_load(files["exporters/tenants/queries.yaml"])["pgmon_discovery"]["query"]
    # shop and billing are listed in pgmon_databases on db1:5432; postgres is the server exporter's own.
    assert "datname <> ALL (ARRAY[E'billing', E'postgres', E'shop\\'s db: main'])" in query
    assert "datname ~ E'^(?:(?:t_.*)|(?:it\\'s))$'" in query


@pytest.mark.parametrize("value", ["plain", "it's", "back\\slash", "both \\' and '"])
def test_sql_strings_mean_their_value(value):
    # What PostgreSQL reads in E'...': \\ is one backslash, \' one quote.
    body = sql_string(value)[2:-1]
    assert body.replace("\\\\", "\0").replace("\\'", "'").replace("\0", "\\") == value


def test_the_rules_know_each_server_and_spare_a_dropped_database():
    rules = yaml.safe_load(render_rules(with_server()))
    groups = {g["name"]: g["rules"] for g in rules["groups"]}
    (failing,) = groups["pgmon.discovery"]
    assert failing["labels"] == {"severity": "warning", "discovered_by": "tenants"}
    assert 'filename="/discovered/tenants.json"' in failing["expr"]
    assert failing["expr"].endswith('"server", "db1:5432", "", "")')
    (down,) = [r for r in groups["pgmon.availability"] if r["alert"] == "PostgresDown"]
    assert 'label_replace(pgmon_discovery_listed == 1, "database"' in down["expr"]
    plain = render_rules(build_settings(group_data(), ENVIRON)).decode()
    assert "pgmon.discovery" not in plain and "discovered_by" not in plain


# ---- discover.sh, run by busybox as in the exporter's image


def exposition_value(text: str) -> str:
    """A label value as client_golang writes it: backslash, double quote and line feed escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def listing(groups: list[dict], ran: bool = True) -> str:
    """The exporter's metrics with the pgmon_discovery rows: its row of 0 only if the listing ran."""
    lines = ["pg_up 1", f"# TYPE {LISTED_METRIC} gauge"]
    if ran:
        lines.append(f'{LISTED_METRIC}{{server="db:5432",target_group="",tenant=""}} 0')
    for group in groups:
        entry = exposition_value(json.dumps(group, ensure_ascii=False))
        tenant = exposition_value(group["labels"]["database"])
        lines.append(
            f'{LISTED_METRIC}{{server="db:5432",target_group="{entry}",tenant="{tenant}"}} 1'
        )
    return "\n".join(lines + ["pg_exporter_last_scrape_error 0", ""])


class MetricsServer:
    """An exporter's /metrics on loopback, whose body a test changes as it goes."""

    def __init__(self):
        body = self.body = [listing([])]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                data = body[0].encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def close(self):
        self.server.shutdown()


BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox: tests/e2e/prepare_machine.sh")


@pytest.fixture
def discovery(tmp_path):
    """discover.sh every second, with only busybox's applets on its PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "wget", "timeout", "grep", "sed", "awk", "mv", "sleep", "printf"):
        (bin_dir / applet).symlink_to(BUSYBOX)
    server = MetricsServer()
    out = tmp_path / "tenants.json"
    process = subprocess.Popen(
        [BUSYBOX, "sh", str(DISCOVER_SCRIPT), str(out), "1", server.url],
        env={"PATH": str(bin_dir)},
    )
    yield server, out
    process.kill()
    process.wait()
    server.close()


def wait_for_list(out: Path, expected: list[dict], deadline: float = 10) -> None:
    end = time.monotonic() + deadline
    seen = None
    while time.monotonic() < end:
        if out.exists():
            try:
                seen = json.loads(out.read_text())
            except ValueError:  # never: the file is replaced whole
                seen = "not JSON: " + out.read_text()
            if seen == expected:
                return
        time.sleep(0.1)
    raise AssertionError(f"the list is {seen!r}, not {expected!r}")


def group(name: str) -> dict:
    return {
        "targets": ["tenants-tenants:9187"],
        "labels": {"database": f"tenants/{name}", "__param_target": f"postgresql://db:5432/{name}"},
    }


@needs_busybox
def test_the_list_follows_the_listing_and_survives_a_failed_one(discovery):
    server, out = discovery
    server.body[0] = listing([group("a"), group("b")])
    wait_for_list(out, [group("a"), group("b")])
    server.body[0] = listing([group("b")])
    wait_for_list(out, [group("b")])
    server.body[0] = listing([])
    wait_for_list(out, [])
    server.body[0] = listing([group("c")])
    wait_for_list(out, [group("c")])
    # The listing did not run (query failed, server down): the last list stays, not rewritten.
    server.body[0] = listing([], ran=False)
    time.sleep(1.5)  # let at least one cycle pass, then make sure no later one rewrites it
    before = out.stat().st_mtime_ns
    time.sleep(2.5)
    assert out.stat().st_mtime_ns == before
    assert json.loads(out.read_text()) == [group("c")]
    # An exporter that does not answer: the same.
    server.close()
    time.sleep(2.5)
    assert json.loads(out.read_text()) == [group("c")]


NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=20)


@needs_busybox
@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(NAMES, min_size=1, max_size=4, unique=True))
def test_any_database_name_comes_through_whole(discovery, names):
    server, out = discovery
    groups = [group(name) for name in names]
    server.body[0] = listing(groups)
    wait_for_list(out, groups)
