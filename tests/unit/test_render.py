import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.render import render_stack
from tasks.render.api_auth import api_credentials
from tasks.render.compose import compose_services
from tasks.render.exporters import TABLE_QUERIES, server_primaries
from tasks.render.grafana import (
    DASHBOARD_9628_UID,
    DATASOURCE_UID,
    bind_dashboard_inputs,
)
from tasks.render.prometheus import render_recording_rules, render_rules
from tasks.settings import build_settings
from tasks.stack_model import EXPORTER_UID

from .conftest import ENVIRON, error_for, group_data, needs_amtool, needs_docker, needs_promtool


def write_tree(stack, root: Path) -> dict[str, Path]:
    paths = {}
    for f in stack.files:
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.content)
        paths[f.path] = path
    return paths


def _container_paths_to(root: Path, path: Path, prefix: str, local: str) -> None:
    path.write_text(path.read_text().replace(prefix, str(root / local) + "/"))


@needs_promtool
def test_prometheus_config_and_rules_pass_promtool(settings, dashboard_9628, tmp_path):
    paths = write_tree(render_stack(settings, dashboard_9628), tmp_path)
    _container_paths_to(
        tmp_path, paths["prometheus/prometheus.yml"], "/etc/prometheus/", "prometheus"
    )
    result = subprocess.run(
        ["promtool", "check", "config", paths["prometheus/prometheus.yml"]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout and "WARNING" not in result.stdout + result.stderr
    for rules in ("pgmon.rules.yml", "pgmon.recording.yml"):
        result = subprocess.run(
            ["promtool", "check", "rules", paths[f"prometheus/rules/{rules}"]],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@needs_amtool
def test_alertmanager_config_passes_amtool_and_templates_render(settings, dashboard_9628, tmp_path):
    paths = write_tree(render_stack(settings, dashboard_9628), tmp_path)
    _container_paths_to(
        tmp_path, paths["alertmanager/alertmanager.yml"], "/etc/alertmanager/", "alertmanager"
    )
    result = subprocess.run(
        ["amtool", "check-config", paths["alertmanager/alertmanager.yml"]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # blackhole, Discord and Telegram, and the drill's copies of the two
    assert "5 receivers" in result.stdout and "1 templates" in result.stdout
    for name in ("pgmon.title", "pgmon.discord.message", "pgmon.telegram.message"):
        rendered = subprocess.run(
            [
                "amtool",
                "template",
                "render",
                f"--template.glob={paths['alertmanager/templates/pgmon.tmpl']}",
                f'--template.text={{{{ template "{name}" . }}}}',
            ],
            capture_output=True,
            text=True,
        )
        assert rendered.returncode == 0 and rendered.stdout.strip(), (name, rendered.stderr)


@needs_docker
def test_compose_file_is_valid_and_values_survive_interpolation(settings, dashboard_9628, tmp_path):
    write_tree(render_stack(settings, dashboard_9628), tmp_path)
    result = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    shop = config["services"]["exporter-shop"]["environment"]
    # `config` prints its result re-escaped; "mon" alone would mean compose interpolated "$user".
    assert shop["PGUSER"] == "mon$$user" and shop["PGDATABASE"] == "shop's db: main"
    assert shop["DATA_SOURCE_URI"] == "db1:5432?sslmode=require"
    assert shop["PGPASSFILE"] == "/etc/postgres_exporter/pgpass"
    assert not {
        "DATA_SOURCE_NAME",
        "DATA_SOURCE_USER",
        "DATA_SOURCE_PASS",
        "DATA_SOURCE_PASS_FILE",
    } & set(shop)
    ports = {name: svc.get("ports", []) for name, svc in config["services"].items()}
    assert [p["host_ip"] for p in ports["prometheus"]] == ["127.0.0.1"]
    assert [p["host_ip"] for p in ports["alertmanager"]] == ["127.0.0.1"]
    assert all(not ports[f"exporter-{n}"] for n in ("shop", "billing", "ledger"))
    assert config["services"]["grafana"]["networks"].keys() == {"ui"}


def test_secrets_only_in_restricted_files(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    secrets = [
        ENVIRON[k]
        for k in (
            "PW_SHOP",
            "PW_BILLING",
            "PW_LEDGER",
            "GRAFANA_PW",
            "GRAFANA_KEY",
            "DISCORD_URL",
            "TG_TOKEN",
        )
    ] + [api_credentials(settings)[1]]
    for f in stack.files:
        if f.secret:
            assert f.mode & 0o007 == 0, f.path  # nothing for "others"
        else:
            for value in secrets:
                assert value.encode() not in f.content, f.path
    password = next(f for f in stack.files if f.path == "exporters/shop/pgpass")
    escaped = ENVIRON["PW_SHOP"].replace("\\", "\\\\").replace(":", "\\:")
    assert password.content == f"*:*:*:*:{escaped}\n".encode() and (
        password.uid,
        password.mode,
    ) == (EXPORTER_UID, 0o400)
    assert ENVIRON["PW_SHOP"] not in repr(password)


def test_secrets_belong_to_the_uid_their_container_runs_as_and_no_host_account(
    settings, dashboard_9628
):
    """Not the images' 65534, the host's nobody; each secret folder lets its owner open files, not list them."""
    stack = render_stack(settings, dashboard_9628)
    users = {name: svc.get("user") for name, svc in compose_services(settings).items()}
    secret_dirs = {f.path.rsplit("/", 1)[0] for f in stack.files if f.secret}
    assert {
        "prometheus/secrets",
        "alertmanager/secrets",
        "exporters/shop",
        "grafana/secrets",
    } <= secret_dirs
    for d in stack.directories:
        if d.path in secret_dirs:
            assert d.mode == 0o100 and d.uid not in (0, 65534), d
    for f in stack.files:
        if f.secret and not f.path.startswith("grafana/"):
            folder, name = f.path.split("/")[
                :2
            ]  # prometheus/secrets/..., alertmanager/secrets/..., exporters/<name>/pgpass
            reader = folder if folder in ("prometheus", "alertmanager") else f"exporter-{name}"
            assert users[reader] == f"{f.uid}:{f.gid}" and 65000 <= f.uid <= 65533, f.path
    for service in ("prometheus", "alertmanager", "exporter-shop", "node-exporter"):
        assert users[service] and not users[service].startswith("65534"), service
    assert (
        len({users[s] for s in ("prometheus", "alertmanager", "exporter-shop", "node-exporter")})
        == 4
    )


def test_server_wide_collectors_run_once_per_server(settings):
    assert server_primaries(settings) == {"shop", "ledger"}  # billing shares shop's server
    services = compose_services(settings)
    billing = services["exporter-billing"]["command"]
    assert "--no-collector.stat_database" in billing and "--disable-settings-metrics" in billing
    assert not any(
        flag.startswith("--no-collector") for flag in services["exporter-shop"]["command"]
    )


def test_adding_a_database_changes_no_other_service(settings):
    before = compose_services(settings)
    dbs = group_data()["pgmon_databases"]
    more = build_settings(
        group_data(
            pgmon_databases=dbs
            + [
                {
                    "name": "extra",
                    "host": "db3",
                    "dbname": "x",
                    "user": "u",
                    "password_env": "PW_LEDGER",
                }
            ]
        ),
        ENVIRON,
    )
    after = compose_services(more)
    assert set(after) - set(before) == {"exporter-extra"}
    assert all(after[name]["labels"] == before[name]["labels"] for name in before)


def test_targets_carry_database_server_and_human_instance(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    targets = json.loads(
        next(f for f in stack.files if f.path == "prometheus/targets/postgres.json").content
    )
    labels = {t["labels"]["database"]: t["labels"] for t in targets}
    assert labels["shop"] == {
        "team": 'check"out',
        "database": "shop",
        "server": "db1:5432",
        "instance": "shop",
    }
    assert labels["ledger"]["server"] == "db2:5433"


def test_alertmanager_routes_critical_to_both_channels(settings, dashboard_9628):
    stack = render_stack(settings, dashboard_9628)
    config = yaml.safe_load(
        next(f for f in stack.files if f.path == "alertmanager/alertmanager.yml").content
    )
    routes = {
        r["receiver"]: r["matchers"] for r in config["route"]["routes"][1:]
    }  # after the drill's
    assert routes == {
        "discord": ['severity=~"critical|warning"'],
        "telegram": ['severity="critical"'],
    }
    telegram = next(r for r in config["receivers"] if r["name"] == "telegram")["telegram_configs"][
        0
    ]
    assert telegram["chat_id_file"].endswith("/telegram_chat_0") and telegram[
        "bot_token_file"
    ].endswith("telegram_bot_token")
    assert "chat_id" not in telegram and b"1234567890" not in yaml.safe_dump(config).encode()


def test_dashboard_inputs_bound_like_grafana_import(dashboard_9628):
    bound = bind_dashboard_inputs(
        dashboard_9628, {"DS_PROMETHEUS": DATASOURCE_UID}, DASHBOARD_9628_UID
    )
    text = json.dumps(bound)
    assert "${DS_PROMETHEUS}" not in text and "__inputs" not in bound
    first_query = next(panel for panel in bound["panels"] if panel["type"] != "row")
    assert first_query["datasource"] == DATASOURCE_UID and bound["uid"] == DASHBOARD_9628_UID
    with pytest.raises(ValueError, match="DS_PROMETHEUS"):
        bind_dashboard_inputs(dashboard_9628, {}, DASHBOARD_9628_UID)


def test_table_metrics_can_be_turned_off_per_database():
    dbs = group_data()["pgmon_databases"]
    settings = build_settings(
        group_data(pgmon_databases=[dbs[0], {**dbs[1], "table_metrics": False}]), ENVIRON
    )
    services = compose_services(settings)
    assert "--no-collector.stat_user_tables" in services["exporter-billing"]["command"]
    assert "--no-collector.statio_user_tables" in services["exporter-billing"]["command"]
    assert not any("user_tables" in flag for flag in services["exporter-shop"]["command"])
    files = {
        f.path: yaml.safe_load(f.content)
        for f in render_stack(settings, {"panels": []}).files
        if f.path.endswith("queries.yaml")
    }
    assert not set(TABLE_QUERIES) & set(files["exporters/billing/queries.yaml"])
    assert set(TABLE_QUERIES) <= set(files["exporters/shop/queries.yaml"])


def test_exporter_flags_follow_its_version():
    dbs = group_data()["pgmon_databases"]
    for image, progress_off, timeout in (
        ("quay.io/prometheuscommunity/postgres-exporter:v0.19.1", True, "--collection-timeout=9s"),
        ("registry.local/postgres-exporter:v0.17.1", False, None),
        ("registry.local/postgres-exporter@sha256:" + "a" * 64, True, "--collection-timeout=9s"),
    ):  # default's
        settings = build_settings(
            group_data(pgmon_databases=dbs, pgmon_images={"postgres_exporter": image}), ENVIRON
        )
        services = compose_services(settings)
        billing, shop = (
            services["exporter-billing"]["command"],
            services["exporter-shop"]["command"],
        )
        assert (
            "--no-collector.stat_progress_vacuum" in billing
        ) == progress_off  # billing shares shop's server
        assert not any("stat_progress_vacuum" in flag for flag in shop)
        assert (
            (timeout in billing)
            if timeout
            else not any("collection-timeout" in flag for flag in billing)
        )


def test_exporter_flags_follow_postgres_exporter_0_20s_collectors():
    """0.20 renamed replication_slot, dropped --disable-settings-metrics, and made collectors of the default
    metrics pg_settings, pg_stat_activity, pg_stat_archiver and pg_stat_replication (its CHANGELOG)."""
    dbs = group_data()["pgmon_databases"]
    commands = {}
    for image in ("prom/postgres-exporter:v0.19.1", "prom/postgres-exporter:v0.20.1"):
        settings = build_settings(
            group_data(pgmon_databases=dbs, pgmon_images={"postgres_exporter": image}), ENVIRON
        )
        services = compose_services(settings)
        commands[image[-6:]] = services["exporter-billing"]["command"]
        assert not any(f.startswith("--no-collector") for f in services["exporter-shop"]["command"])
    old, new = commands["0.19.1"], commands["0.20.1"]
    assert "--disable-default-metrics" in old and "--disable-default-metrics" in new
    assert set(new) - set(old) == {
        "--no-collector.replication_slots",
        "--no-collector.settings",
        "--no-collector.stat_activity",
        "--no-collector.stat_archiver",
        "--no-collector.stat_replication",
    }
    assert set(old) - set(new) == {"--no-collector.replication_slot", "--disable-settings-metrics"}


def test_images_older_than_pgmons_files_are_refused():
    message = error_for(
        group_data(
            pgmon_images={
                "alertmanager": "prom/alertmanager:v0.28.1",
                "prometheus": "prom/prometheus:v2.53.3",
            }
        )
    )
    assert (
        "pgmon_images.alertmanager: 'prom/alertmanager:v0.28.1' is older than pgmon supports (0.31 or later"
        in message
    )
    assert (
        "pgmon_images.prometheus: 'prom/prometheus:v2.53.3' is older than pgmon supports (2.55"
        in message
    )


def test_moving_base_dir_changes_every_service_that_mounts_it(settings):
    moved = compose_services(build_settings(group_data(pgmon_base_dir="/srv/pgmon"), ENVIRON))
    before = compose_services(settings)
    changed = {name for name in before if before[name]["labels"] != moved[name]["labels"]}
    assert changed == set(before) - {"node-exporter"}  # node_exporter mounts the host's / only
    assert "/srv/pgmon/prometheus:/etc/prometheus:ro" in moved["prometheus"]["volumes"]


def test_rule_templates_compiled_once_render_the_same_from_the_controllers_cache(
    settings, tmp_path, monkeypatch
):
    """The first render compiles the rule templates into the cache (a folder only its owner may open); the next
    loads them from there and writes the same rules. A cache that cannot be made is done without."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = render_rules(settings), render_recording_rules(settings)
    compiled = tmp_path / "cache" / "pgmon" / "rule-templates"
    assert len(list(compiled.iterdir())) == 2 and compiled.stat().st_mode & 0o077 == 0
    assert (render_rules(settings), render_recording_rules(settings)) == first
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert (render_rules(settings), render_recording_rules(settings)) == first
