"""pgmon_remote_write: the settings, and what the stack's files say about each store."""

import json

import pytest
import yaml

from tasks.render import render_stack
from tasks.settings import build_settings

from .conftest import ENVIRON, error_for, group_data

VICTORIA = {
    "name": "victoria",
    "url": "https://vm.example.com/api/v1/write",
    "username": "pgmon",
    "password_env": "STORE_PW",
    "query_url": "https://vm.example.com",
}
MIMIR = {
    "name": "mimir",
    "url": "https://mimir.example.com/api/v1/push",
    "bearer_token_env": "STORE_TOKEN",
    "headers": {"X-Scope-OrgID": "team$1"},
    "query_url": "https://mimir.example.com/prometheus",
}
STORE_ENV = {**ENVIRON, "STORE_PW": "v1ctoria:p@ss#%$", "STORE_TOKEN": "glc_t0ken-of-mimir"}


def stack_files(stores, dashboard_9628):
    settings = build_settings(group_data(pgmon_remote_write=stores), STORE_ENV)
    return {f.path: f for f in render_stack(settings, dashboard_9628).files}


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        (
            {**VICTORIA, "url": "https://pgmon:hunter2@vm.example.com/api/v1/write"},
            "pgmon_remote_write[0].url: holds a user name or password before its host; put the user name in "
            "username and the password in an environment variable named by password_env",
        ),
        (
            {k: v for k, v in VICTORIA.items() if k != "password_env"},
            "pgmon_remote_write[0]: username and password_env go together",
        ),
        (
            {**VICTORIA, "bearer_token_env": "STORE_TOKEN"},
            "pgmon_remote_write[0]: set password_env (basic auth) or bearer_token_env, not both",
        ),
        (
            {**MIMIR, "headers": {"authorization": "Bearer x"}},
            "pgmon_remote_write[0].headers: 'authorization' is set by Prometheus itself; for a password or "
            "token use password_env or bearer_token_env",
        ),
        (
            {**MIMIR, "headers": {"X-Scope-OrgID": "a\nb"}},
            "pgmon_remote_write[0].headers: X-Scope-OrgID: give a value of visible ASCII characters",
        ),
        (
            {**MIMIR, "headers": {"X Tenant": "a"}},
            "pgmon_remote_write[0].headers: 'X Tenant' is not an HTTP header name",
        ),
        (
            {**VICTORIA, "username": "pg:mon"},
            "pgmon_remote_write[0].username: give the user name without ':'",
        ),
        (
            {**VICTORIA, "url": "vm.example.com/write"},
            "pgmon_remote_write[0].url: 'vm.example.com/write' is not",
        ),
        (
            {
                **VICTORIA,
                "url": "pgmon:hunter2@vm.example.com/write",
            },  # no scheme either: still not repeated
            "pgmon_remote_write[0].url: holds a user name or password before its host",
        ),
        (
            {**VICTORIA, "name": "Victoria"},
            "pgmon_remote_write[0].name: 'Victoria' is not a valid name",
        ),
    ],
)
def test_a_store_pgmon_cannot_write_to_is_refused_naming_the_field(store, expected):
    message = error_for(group_data(pgmon_remote_write=[store]), STORE_ENV)
    assert expected in message and "hunter2" not in message


def test_two_stores_of_one_name_and_a_missing_or_padded_secret_are_refused():
    message = error_for(group_data(pgmon_remote_write=[VICTORIA, VICTORIA]), STORE_ENV)
    assert "pgmon_remote_write: the name 'victoria' is used twice" in message
    message = error_for(group_data(pgmon_remote_write=[VICTORIA, MIMIR]), ENVIRON)
    assert (
        "pgmon_remote_write[0].password_env (victoria): the environment variable named there is not set"
        in message
    )
    assert "pgmon_remote_write[1].bearer_token_env (mimir): the environment variable" in message
    message = error_for(
        group_data(pgmon_remote_write=[VICTORIA]), {**STORE_ENV, "STORE_PW": "padded-password "}
    )
    assert (
        "pgmon_remote_write[0].password_env (victoria): the value of STORE_PW starts or ends with"
        in message
    )
    assert "padded-password" not in message


def test_prometheus_reads_each_stores_secret_from_a_file_of_its_own(dashboard_9628):
    files = stack_files([VICTORIA, MIMIR], dashboard_9628)
    config = yaml.safe_load(files["prometheus/prometheus.yml"].content)
    assert config["remote_write"] == [
        {
            "name": "victoria",
            "url": VICTORIA["url"],
            "basic_auth": {
                "username": "pgmon",
                "password_file": "/etc/prometheus/secrets/store-victoria",
            },
        },
        {
            "name": "mimir",
            "url": MIMIR["url"],
            "authorization": {
                "type": "Bearer",
                "credentials_file": "/etc/prometheus/secrets/store-mimir",
            },
            "headers": {"X-Scope-OrgID": "team$1"},
        },
    ]
    for store, env in (("victoria", "STORE_PW"), ("mimir", "STORE_TOKEN")):
        for reader, uid in (("prometheus", 65531), ("grafana", 472)):
            secret = files[f"{reader}/secrets/store-{store}"]
            assert secret.content == STORE_ENV[env].encode() and secret.secret
            assert (secret.mode, secret.uid) == (0o400, uid)
    for path, f in files.items():
        if not f.secret:
            assert STORE_ENV["STORE_PW"].encode() not in f.content, path
            assert STORE_ENV["STORE_TOKEN"].encode() not in f.content, path


def test_grafana_reads_each_store_back_with_its_credentials(dashboard_9628):
    files = stack_files(
        [VICTORIA, MIMIR, {**MIMIR, "name": "write-only", "query_url": None}], dashboard_9628
    )
    sources = yaml.safe_load(files["grafana/provisioning/datasources/pgmon.yml"].content)[
        "datasources"
    ]
    assert [s["uid"] for s in sources] == [
        "pgmon-prometheus",
        "pgmon-store-victoria",
        "pgmon-store-mimir",
    ]
    victoria, mimir = sources[1:]
    assert (victoria["url"], victoria["basicAuth"], victoria["basicAuthUser"]) == (
        "https://vm.example.com",
        True,
        "pgmon",
    )
    assert victoria["secureJsonData"] == {
        "basicAuthPassword": "$__file{/etc/grafana/secrets/store-victoria}"
    }
    assert mimir["basicAuth"] is False
    assert (mimir["jsonData"]["httpHeaderName1"], mimir["jsonData"]["httpHeaderName2"]) == (
        "X-Scope-OrgID",
        "Authorization",
    )
    # Grafana expands $NAME in provisioning values: the tenant's $ is written $$.
    assert mimir["secureJsonData"] == {
        "httpHeaderValue1": "team$$1",
        "httpHeaderValue2": "Bearer $__file{/etc/grafana/secrets/store-mimir}",
    }
    assert "grafana/secrets/store-write-only" not in files


def test_without_stores_prometheus_yml_has_no_remote_write(dashboard_9628):
    files = stack_files([], dashboard_9628)
    assert "remote_write" not in yaml.safe_load(files["prometheus/prometheus.yml"].content)
    assert (
        json.dumps(
            yaml.safe_load(files["grafana/provisioning/datasources/pgmon.yml"].content)
        ).count('"uid"')
        == 1
    )


def test_external_labels_mark_what_leaves_this_prometheus(dashboard_9628):
    settings = build_settings(group_data(pgmon_external_labels={"site": "eu-1"}), ENVIRON)
    files = {f.path: f for f in render_stack(settings, dashboard_9628).files}
    config = yaml.safe_load(files["prometheus/prometheus.yml"].content)
    assert config["global"]["external_labels"] == {"site": "eu-1"}
    for labels, expected in (
        ({"site": ""}, "pgmon_external_labels: labels ['site'] have no value"),
        ({"pgmon_drill": "true"}, "names starting with pgmon_ are pgmon's own"),
        ({"severity": "x"}, "label 'severity' is set by pgmon itself"),
    ):
        assert expected in error_for(group_data(pgmon_external_labels=labels), ENVIRON)
