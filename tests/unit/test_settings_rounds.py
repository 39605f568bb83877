"""One validation round names every problem (missing secrets included, each variable once), unknown keys
inside entries get a suggestion, and the single commands read only the secrets they use."""

from types import SimpleNamespace

import pytest

from tasks.settings import DeployError, load_channel_settings, load_config

from .conftest import ENVIRON, error_for, group_data


def test_bad_settings_and_missing_secrets_in_one_round():
    dbs = group_data()["pgmon_databases"]
    broken = group_data(pgmon_databases=[{**dbs[0], "port": 0}, dbs[1], dbs[2]], pgmon_project="A")
    environ = {k: v for k, v in ENVIRON.items() if k not in ("PW_BILLING", "TG_TOKEN")}
    message = error_for(broken, environ)
    assert "pgmon_databases[0].port" in message and "pgmon_project" in message
    # The secrets of what did validate, at the places it has in group_data.
    assert "pgmon_databases[1].password_env (billing): the environment variable named" in message
    assert "pgmon_telegram.bot_token_env: the environment variable named there" in message
    # The invalid entry's own secret is not looked for: fixing its port comes first.
    assert "PW_SHOP" not in message


def test_a_variable_shared_by_several_settings_is_one_problem():
    dbs = group_data()["pgmon_databases"]
    shared = [{**db, "password_env": "PW_TEAM"} for db in dbs]
    message = error_for(group_data(pgmon_databases=shared))
    assert message.count("is not set") == 1
    assert (
        "pgmon_databases[0].password_env (shop), pgmon_databases[1].password_env (billing), "
        "pgmon_databases[2].password_env (ledger): the environment variable named there is not set"
    ) in message


@pytest.mark.parametrize(
    ("where", "entry_key", "suggested"),
    [
        ("pgmon_databases", "passwrd_env", "password_env"),
        ("pgmon_discord", "webhook_ur_env", "webhook_url_env"),
        ("pgmon_telegram", "chat_ids_env", "chat_id_env"),
    ],
)
def test_unknown_keys_inside_entries_get_a_suggestion(where, entry_key, suggested):
    data = group_data()
    if where == "pgmon_databases":
        data[where] = [{**data[where][0], entry_key: "X"}]
        path = f"{where}[0].{entry_key}"
    else:
        data[where] = {**data[where], entry_key: "X"}
        path = f"{where}.{entry_key}"
    assert f"{path}: unknown key; did you mean {suggested}?" in error_for(data)


def test_an_unknown_key_like_nothing_says_so():
    dbs = group_data()["pgmon_databases"]
    message = error_for(group_data(pgmon_databases=[{**dbs[0], "zzz": 1}]))
    assert "pgmon_databases[0].zzz: unknown key; remove it or fix its spelling" in message


def host_with(data):
    return SimpleNamespace(data=SimpleNamespace(dict=lambda: data))


def test_commands_without_secrets_read_none_and_name_themselves(monkeypatch):
    for name in list(ENVIRON) + ["PGMON_GRAFANA_ADMIN_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    data = group_data(pgmon_silence={"database": "shop", "for": "1h", "reason": "upgrade"})
    for command in ("silence", "uninstall", "back up", "restore"):
        assert load_config(host_with(data), command).config.silence.database == "shop"
    with pytest.raises(DeployError) as refused:
        load_config(host_with({**data, "pgmon_base_dir": "relative"}), "silence")
    assert str(refused.value).startswith("pgmon cannot silence; nothing on the host was changed.")


def test_the_test_alert_reads_the_channels_secrets_only(monkeypatch):
    for name in ENVIRON:
        monkeypatch.delenv(name, raising=False)
    for name in ("DISCORD_URL", "TG_TOKEN", "TG_CHAT"):
        monkeypatch.setenv(name, ENVIRON[name])
    settings = load_channel_settings(host_with(group_data()))
    assert settings.telegram_chat_ids == (-1001234567890,)
    assert not hasattr(settings, "database_passwords")
    monkeypatch.delenv("TG_CHAT")
    with pytest.raises(DeployError) as refused:
        load_channel_settings(host_with(group_data()))
    message = str(refused.value)
    assert message.startswith("pgmon cannot send a test alert;")
    assert "pgmon_telegram.chat_id_env: the environment variable named there is not set" in message
    assert "password_env" not in message and "GRAFANA" not in message
