import pytest

from tasks.settings import build_settings

from .conftest import ENVIRON, error_for, group_data


def test_valid_settings_read_secrets_from_the_environment(settings):
    assert [db.name for db in settings.databases] == ["shop", "billing", "ledger"]
    assert settings.database_passwords["shop"].get_secret_value() == ENVIRON["PW_SHOP"]
    assert settings.telegram_chat_ids == (-1001234567890,)
    assert ENVIRON["PW_SHOP"] not in repr(settings)


def test_nothing_configured_says_what_to_set():
    message = error_for({}, {})
    assert "pgmon_databases: no database is configured" in message
    assert "pgmon_discord / pgmon_telegram" in message
    assert "PGMON_GRAFANA_ADMIN_PASSWORD is not set" in message
    assert "nothing on the host was changed" in message


def test_missing_secret_names_the_field_and_pgmon_default_variables_only():
    environ = {k: v for k, v in ENVIRON.items() if k != "PW_LEDGER"}
    message = error_for(group_data(), environ)
    assert (
        "pgmon_databases[2].password_env (ledger): the environment variable named there is not set"
        in message
    )
    assert "PW_LEDGER" not in message  # the user's own name: its setting says where to read it
    message = error_for(group_data(pgmon_discord={}), {})
    assert (
        "pgmon_discord.webhook_url_env: the environment variable PGMON_DISCORD_WEBHOOK_URL is not set"
        in message
    )


@pytest.mark.parametrize("pasted", ["Winter2024_shop_Pw", "CorrectHorseBatteryStaple"])
def test_a_pasted_secret_shaped_like_a_name_is_not_repeated(pasted):
    """A password of letters, digits and '_' is a valid variable name: unset, it must not be echoed."""
    dbs = group_data()["pgmon_databases"]
    message = error_for(
        group_data(
            pgmon_databases=[{**dbs[0], "password_env": pasted}],
            pgmon_grafana_admin_password_env=pasted,
            pgmon_telegram={"bot_token_env": pasted, "chat_id_env": "TG_CHAT"},
        )
    )
    assert (
        "pgmon_databases[0].password_env (shop), pgmon_grafana_admin_password_env, "
        "pgmon_telegram.bot_token_env: the environment variable named there is not set" in message
    )
    assert pasted not in message


def test_a_base_dir_ending_in_a_slash_is_the_same_base_dir():
    for written in ("/opt/pgmon/", "/opt/pgmon//"):
        assert build_settings(group_data(pgmon_base_dir=written), ENVIRON).config.base_dir == (
            "/opt/pgmon"
        )


def test_duplicate_names_and_targets_are_refused():
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=dbs + [dict(dbs[1])]))
    assert "the name 'billing' is used twice" in message
    assert "'billing' on db1:5432 is listed twice" in message


@pytest.mark.parametrize("bad", ["Shop", "shop db", "-shop", "a" * 41, "shöp"])
def test_names_must_be_container_and_label_safe(bad):
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "name": bad}]))
    assert "pgmon_databases[0].name" in message and "lowercase letters" in message


def test_unknown_keys_are_typos_not_ignored():
    assert "pgmon_databse: unknown pgmon setting; did you mean pgmon_databases?" in error_for(
        {**group_data(), "pgmon_databse": []}
    )
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "passwrd_env": "X"}]))
    assert "pgmon_databases[0].passwrd_env: unknown key" in message


def test_port_clash_is_refused():
    message = error_for(group_data(pgmon_alertmanager_port=9090))
    assert "alertmanager_port: port 9090 is already used by prometheus_port" in message


def test_secret_value_instead_of_variable_name_is_explained():
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "password_env": "hunter2!"}]))
    assert "pgmon_databases[0].password_env: is not an environment variable name" in message
    assert "give the NAME of the variable" in message
    assert (
        "hunter2" not in message
    )  # what stands there by mistake is often the secret: never repeat it


def test_reserved_labels_and_bad_durations_are_refused():
    dbs = group_data()["pgmon_databases"]
    message = error_for(
        group_data(
            pgmon_databases=[{**dbs[0], "labels": {"database": "x"}}],
            pgmon_alert_timing={"postgres_down_for": "one minute"},
        )
    )
    assert "label 'database' is set by pgmon itself" in message
    assert (
        "pgmon_alert_timing.postgres_down_for: 'one minute' is not a Prometheus duration" in message
    )


@pytest.mark.parametrize(
    "chats", ["@mychannel", "0", "12345678901234567890", "١٢٣", "-100,", "1e3"]
)
def test_telegram_chat_id_must_be_ascii_digits_that_telegram_accepts(chats):
    message = error_for(group_data(), {**ENVIRON, "TG_CHAT": chats})
    assert (
        "pgmon_telegram.chat_id_env: the value of TG_CHAT must hold a Telegram chat id" in message
    )
    assert len(chats) < 3 or chats not in message


def test_grafana_password_admin_is_refused():
    assert "choose a real password" in error_for(group_data(), {**ENVIRON, "GRAFANA_PW": "admin"})


def test_any_password_postgresql_takes_works_but_a_line_break():
    settings = build_settings(group_data(), {**ENVIRON, "PW_LEDGER": " two words\t"})
    assert settings.database_passwords["ledger"].get_secret_value() == " two words\t"
    message = error_for(group_data(), {**ENVIRON, "PW_LEDGER": "two\nlines"})
    assert "the value of PW_LEDGER holds a line break" in message and "two" not in message


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("pgmon_base_dir", "/.", "pgmon_base_dir: '/.' is not written plainly"),
        ("pgmon_base_dir", "/opt/..", "is not written plainly (it means '/')"),
        ("pgmon_base_dir", "/srv/../etc", "is not written plainly (it means '/etc')"),
        ("pgmon_base_dir", "/etc", "'/etc' is a directory of the system"),
        ("pgmon_base_dir", "/usr/local/pgmon", "is a directory of the system"),
        ("pgmon_base_dir", "opt/pgmon", "must be an absolute path"),
        (
            "pgmon_alert_timing",
            {"group_wait": "30s1m"},
            "pgmon_alert_timing.group_wait: '30s1m' is not a Prometheus",
        ),
        (
            "pgmon_alert_timing",
            {"postgres_down_for": "5m5m"},
            "'5m5m' is not a Prometheus duration",
        ),
        ("pgmon_alert_timing", {"repeat_interval": "0d1w"}, "'0d1w' is not a Prometheus duration"),
        (
            "pgmon_alert_timing",
            {"group_interval": "0s"},
            "pgmon_alert_timing.group_interval: '0s' must be longer",
        ),
        ("pgmon_alert_timing", {"repeat_interval": "200y"}, "'200y' is longer than 100 years"),
        (
            "pgmon_watchdog",
            {"interval": "0m"},
            "pgmon_watchdog.interval: '0m' must be longer than 0s",
        ),
        ("pgmon_grafana_bind_address", "::1", "pgmon does not publish Grafana on IPv6"),
        (
            "pgmon_telegram",
            {"api_url": "api.telegram.org"},
            "pgmon_telegram.api_url: 'api.telegram.org' is not an http",
        ),
        (
            "pgmon_dashboard_9628",
            {"url": "https://x/{TOKEN}"},
            "pgmon_dashboard_9628.url: may hold {revision}",
        ),
        (
            "pgmon_dashboard_9628",
            {"url": "https://x/{}"},
            "pgmon_dashboard_9628.url: may hold {revision}",
        ),
    ],
)
def test_values_a_component_would_reject_are_refused_naming_the_field(key, value, expected):
    assert expected in error_for(group_data(**{key: value}))


@pytest.mark.parametrize(
    "host", ["db/1", "db?sslmode=disable", "db#x", "[::1]", "db:5432", "db 1", ""]
)
def test_a_host_that_would_reach_into_the_connection_uri_is_refused(host):
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "host": host}]))
    assert "pgmon_databases[0].host: " in message and "is not a host name or IP address" in message


@pytest.mark.parametrize(
    "label",
    [
        "state",
        "mode",
        "user",
        "backend_type",
        "wait_event_type",
        "collector",
        "without",
        "inf",
        "nan",
    ],
)
def test_labels_the_rules_group_by_or_promql_reserves_are_refused(label):
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "labels": {label: "x"}}]))
    assert (
        f"pgmon_databases[0].labels: Value error, label {label!r}" in message
        or f"pgmon_databases[0].labels: label {label!r}" in message
    )


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        (
            "DISCORD_URL",
            "not a url",
            "pgmon_discord.webhook_url_env: the value of DISCORD_URL is not an http(s) URL",
        ),
        ("DISCORD_URL", "ftp://hook", "the value of DISCORD_URL is not an http(s) URL"),
        ("TG_TOKEN", "abc def", "the value of TG_TOKEN is not a bot token"),
        ("GRAFANA_PW", "secret\n", "the value of GRAFANA_PW starts or ends with white space"),
        ("GRAFANA_KEY", "x" * 31, "the value of GRAFANA_KEY is shorter than 32 characters"),
        ("GRAFANA_KEY", " " + "x" * 40, "the value of GRAFANA_KEY starts or ends with white space"),
    ],
)
def test_secrets_of_the_wrong_shape_are_refused_without_repeating_them(variable, value, expected):
    data = group_data(pgmon_discord={"webhook_url_env": "DISCORD_URL"})
    message = error_for(data, {**ENVIRON, variable: value})
    assert expected in message and value.strip() not in message.replace(variable, "")
