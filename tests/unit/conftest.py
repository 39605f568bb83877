import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tasks.dashboard import panels_of
from tasks.render import render_stack
from tasks.render.exporters import DATABASE_QUERIES, SERVER_QUERIES, TABLE_QUERIES
from tasks.render.prometheus import render_rules
from tasks.settings import DeployError, build_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class HostExecuting:
    """pyinfra's host as an operation's generator uses it while executing (``op._inner(...)``)."""

    state = type("State", (), {"is_executing": True})()

    def log(self, text: str) -> None:
        raise AssertionError(f"nothing is said while executing: {text}")


def _needs(tool: str):
    return pytest.mark.skipif(
        not shutil.which(tool), reason=f"{tool}: run tests/e2e/prepare_machine.sh"
    )


needs_promtool = _needs("promtool")
needs_amtool = _needs("amtool")
needs_docker = _needs("docker")  # the CLI and Compose's `config`, which need no engine


def needs_engine(test):
    """The engine runs while the lab is up, and the lab is the end-to-end tests' (one worker's)."""
    return pytest.mark.e2e(pytest.mark.usefixtures("lab")(test))


# Values chosen to break naive templating: quotes, colons, $, #, @, %, YAML markers.
ENVIRON = {
    "PW_SHOP": "p@ss:w/rd#%'\"1\\$HOME",
    "PW_BILLING": "-[yaml]:{x}&*a",
    "PW_LEDGER": "l3dger",
    "GRAFANA_PW": "gr@f'ana\"#%",
    "GRAFANA_KEY": "k3y/of+grafana=" + "x" * 24,
    "DISCORD_URL": "http://127.0.0.1:9/api/webhooks/1/tok",
    "TG_TOKEN": "123:abc",
    "TG_CHAT": "-1001234567890",
}


def group_data(**overrides):
    data = {
        "pgmon_databases": [
            {
                "name": "shop",
                "host": "db1",
                "dbname": "shop's db: main",
                "user": "mon$user",
                "password_env": "PW_SHOP",
                "labels": {"team": 'check"out'},
            },
            {
                "name": "billing",
                "host": "db1",
                "dbname": "billing",
                "user": "mon",
                "password_env": "PW_BILLING",
            },
            {
                "name": "ledger",
                "host": "db2",
                "port": 5433,
                "dbname": "ledger",
                "user": "mon",
                "password_env": "PW_LEDGER",
                "sslmode": "disable",
            },
        ],
        "pgmon_discord": {"webhook_url_env": "DISCORD_URL"},
        "pgmon_telegram": {
            "bot_token_env": "TG_TOKEN",
            "chat_id_env": "TG_CHAT",
            "api_url": "http://127.0.0.1:9",
        },
        "pgmon_grafana_admin_password_env": "GRAFANA_PW",
        "pgmon_grafana_secret_key_env": "GRAFANA_KEY",
    }
    data.update(overrides)
    return data


@pytest.fixture
def settings():
    return build_settings(group_data(), ENVIRON)


@pytest.fixture
def dashboard_9628():
    return json.loads((FIXTURES / "dashboard-9628.json").read_text())


def error_for(data, environ=ENVIRON) -> str:
    """The DeployError message ``build_settings`` gives for ``data``."""
    with pytest.raises(DeployError) as caught:
        build_settings(data, environ)
    return str(caught.value)


def with_thresholds(index: int, thresholds: dict, **overrides) -> dict:
    """group_data() with per-database alert_thresholds on database ``index``."""
    databases = group_data()["pgmon_databases"]
    databases[index] = {**databases[index], "alert_thresholds": thresholds}
    return group_data(pgmon_databases=databases, **overrides)


def alert_rules(settings) -> dict[str, list[dict]]:
    """alertname -> its rendered rules (one per thresholds variant)."""
    rules: dict[str, list[dict]] = {}
    for group in yaml.safe_load(render_rules(settings))["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rules.setdefault(rule["alert"], []).append(rule)
    return rules


def rendered(settings, path: str):
    """One file of the rendered stack, as a ManagedFile."""
    stack = render_stack(settings, json.loads((FIXTURES / "dashboard-9628.json").read_text()))
    return next(f for f in stack.files if f.path == path)


VARIABLE = re.compile(r"\$\{?(\w+)")


def exprs(dashboard: dict):
    """(panel title, PromQL expression) of every query of a dashboard."""
    for panel in panels_of(dashboard["panels"]):
        for target in panel.get("targets") or []:
            yield panel["title"], target["expr"]


def pgmon_query_series() -> set[str]:
    """The series pgmon's exporter queries give: postgres_exporter names them <query>_<column> for each column
    that is not a label."""
    return {
        f"{name}_{column}"
        for name, query in {**DATABASE_QUERIES, **TABLE_QUERIES, **SERVER_QUERIES}.items()
        for metric in query["metrics"]
        for column, spec in metric.items()
        if spec["usage"] != "LABEL"
    }
