import json
from pathlib import Path

import pytest

from tasks.settings import build_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Values chosen to break naive templating: quotes, colons, $, #, @, %, YAML markers.
ENVIRON = {
    "PW_SHOP": "p@ss:w/rd#%'\"1\\$HOME",
    "PW_BILLING": "-[yaml]:{x}&*a",
    "PW_LEDGER": "l3dger",
    "GRAFANA_PW": "gr@f'ana\"#%",
    "DISCORD_URL": "http://127.0.0.1:9/api/webhooks/1/tok",
    "TG_TOKEN": "123:abc",
    "TG_CHAT": "-1001234567890",
}


def group_data(**overrides):
    data = {
        "pgmon_databases": [
            {"name": "shop", "host": "db1", "dbname": "shop's db: main", "user": "mon$user",
             "password_env": "PW_SHOP", "labels": {"team": "check\"out"}},
            {"name": "billing", "host": "db1", "dbname": "billing", "user": "mon", "password_env": "PW_BILLING"},
            {"name": "ledger", "host": "db2", "port": 5433, "dbname": "ledger", "user": "mon",
             "password_env": "PW_LEDGER", "sslmode": "disable"},
        ],
        "pgmon_discord": {"webhook_url_env": "DISCORD_URL"},
        "pgmon_telegram": {"bot_token_env": "TG_TOKEN", "chat_id_env": "TG_CHAT", "api_url": "http://127.0.0.1:9"},
        "pgmon_grafana_admin_password_env": "GRAFANA_PW",
    }
    data.update(overrides)
    return data


@pytest.fixture
def settings():
    return build_settings(group_data(), ENVIRON)


@pytest.fixture
def dashboard_9628():
    return json.loads((FIXTURES / "dashboard-9628.json").read_text())
