import pytest

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


def test_missing_secret_names_the_database_and_variable():
    environ = {k: v for k, v in ENVIRON.items() if k != "PW_LEDGER"}
    message = error_for(group_data(), environ)
    assert "pgmon_databases[2].password_env (ledger): the environment variable PW_LEDGER is not set" in message


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
    assert "give the NAME of the variable" in message
    assert "hunter2" in message  # the user typed it in group_data already; naming it helps them find it


def test_reserved_labels_and_bad_durations_are_refused():
    dbs = group_data()["pgmon_databases"]
    message = error_for(
        group_data(pgmon_databases=[{**dbs[0], "labels": {"database": "x"}}],
                   pgmon_alert_timing={"postgres_down_for": "one minute"})
    )
    assert "label 'database' is set by pgmon itself" in message
    assert "pgmon_alert_timing.postgres_down_for: 'one minute' is not a Prometheus duration" in message


def test_telegram_chat_id_must_be_numeric():
    message = error_for(group_data(), {**ENVIRON, "TG_CHAT": "@mychannel"})
    assert "TG_CHAT must hold a numeric chat id" in message


def test_grafana_password_admin_is_refused():
    assert "choose a real password" in error_for(group_data(), {**ENVIRON, "GRAFANA_PW": "admin"})


def test_password_with_white_space_is_refused_before_the_exporter_leaks_it():
    message = error_for(group_data(), {**ENVIRON, "PW_LEDGER": "two words"})
    assert "PW_LEDGER contains white space" in message and "two words" not in message
