"""pgmon settings for every host in the inventory. Each is documented in
docs/configuration.md; the values below are the defaults unless marked EXAMPLE.

Secrets never go here: each *_env setting names an environment variable that
you export on the machine you run pyinfra from.
"""

# The databases to watch: one postgres_exporter each. `name` is pgmon's name
# for the database (labels, container names); several databases may live on
# the same server. A PostgreSQL on the processing host itself is reached as
# host.docker.internal. The user needs the pg_monitor role.
pgmon_databases = [
    # EXAMPLE:
    # {
    #     "name": "shop",
    #     "host": "db1.internal",
    #     "port": 5432,
    #     "dbname": "shop",
    #     "user": "pgmon",
    #     "password_env": "PGMON_SHOP_PASSWORD",
    #     "sslmode": "require",          # disable | require | verify-ca | verify-full
    #     "labels": {"team": "checkout"},
    # },
]

# Alert channels: at least one. Their secrets come from the named variables.
pgmon_discord = None  # EXAMPLE: {"webhook_url_env": "PGMON_DISCORD_WEBHOOK_URL"}
pgmon_telegram = None  # EXAMPLE: {"bot_token_env": "PGMON_TELEGRAM_BOT_TOKEN", "chat_id_env": "PGMON_TELEGRAM_CHAT_ID"}

pgmon_grafana_admin_password_env = "PGMON_GRAFANA_ADMIN_PASSWORD"
pgmon_grafana_bind_address = "0.0.0.0"
pgmon_grafana_port = 3000
pgmon_scrape_interval_seconds = 15
pgmon_base_dir = "/opt/pgmon"
