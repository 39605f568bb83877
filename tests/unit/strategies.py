"""Hypothesis strategies for tests/unit/test_properties.py: pgmon group_data and a matching environment.

Each case makes up to three kinds of setting odd (ODD_KINDS) and keeps the others plain. An odd value
is drawn from a list of odd but plausible inputs (the first entry of each list is an ordinary one,
so that shrinking ends at the least surprising example) or from free text over an alphabet of
characters that break naive templating. Invalid values are in the lists on purpose: pgmon must
refuse them with a DeployError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

# Characters that break naive YAML, URLs, shells, PromQL or Compose interpolation; unicode letters;
# non-ASCII digits (Arabic-Indic, Devanagari, fullwidth, mathematical); a no-break space.
ODD_ALPHABET = "abcxyzABZ0189_-. '\":#@%$&*!|>?,/\\={}[]~^`+;()üéßДЖ日本\u00a0١٢٣٠५１𝟙😀"

# Strings YAML 1.1 (PyYAML) and YAML 1.2 (Go yaml.v3: Compose) read differently, or read as non-strings.
YAML_LOOKALIKES = [
    "059",
    "08",
    "09",
    "1e3",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "+1",
    "-0",
    "0",
    "00",
    "1.",
    "3.14",
    "-1e-3",
    ".inf",
    ".nan",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "2024-1-2",
    "2024-01-02",
    "1:20",
    "=",
    "<<",
]
ODD_STRINGS = YAML_LOOKALIKES + [
    "mon$user",
    "$HOME",
    "${X}",
    "$$",
    "a:b",
    "a: b",
    "#x",
    "x #y",
    "@x",
    "%x",
    "%(x)s",
    "o'neil",
    'q"uote',
    "two words",
    " lead",
    "trail ",
    "- x",
    "? x",
    "|",
    ">",
    "!tag",
    "&anchor",
    "*alias",
    "{a}",
    "[a]",
    "'x'",
    '"x"',
    "ü",
    "用户",
    "١٢٣",
    "१२३",
    "１２３",
    "𝟙𝟚𝟛",
    "😀",
]

# Passwords of letters, digits and '_' only: pasted into a *_env setting they pass as a variable name.
NAME_SHAPED_SECRET_SAMPLES = ["Winter2024_shop_Pw", "CorrectHorseBatteryStaple"]
# A string that must never be repeated in a DeployError message: what a user pastes by mistake
# into a *_env setting, and what the environment holds.
SECRET_LIKE = [
    "postgres://monitor:S3cr3t-Pa55w0rd@db1:5432/shop",
    "https://discord.com/api/webhooks/123456789012345678/AbCdEf-SeCrEtToKeN_value",
    "123456789:AAHk-SuperSecretBotToken_xyz0123456789",
    "hunter2-hunter2-hunter2",
    *NAME_SHAPED_SECRET_SAMPLES,
]
# At least 12 characters, the length from which check_refusal looks for a repeated secret.
NAME_SHAPED_SECRETS = st.one_of(
    st.sampled_from(NAME_SHAPED_SECRET_SAMPLES),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{11,23}", fullmatch=True),
)


def odd_text(min_size: int = 1, max_size: int = 10):
    return st.text(alphabet=ODD_ALPHABET, min_size=min_size, max_size=max_size)


def mostly(valid, invalid, weight: int = 15):
    """``valid`` ``weight`` times as often as ``invalid`` (values pgmon must refuse); shrinks towards valid."""
    return st.sampled_from([True] * weight + [False]).flatmap(lambda ok: valid if ok else invalid)


# ---------------------------------------------------------------- names, labels, durations, numbers

NAMES = mostly(
    st.one_of(
        st.sampled_from(
            [
                "shop",
                "059",
                "08",
                "1e3",
                "0o17",
                "0x1f",
                "1_000",
                "00",
                "0",
                "yes",
                "null",
                "on",
                "inf",
                "nan",
                "9e9",
                "a-b_c",
                "x" * 40,
            ]
        ),
        st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True),
    ),
    st.sampled_from(["Shop", "a b", "", "-a", "x" * 41, "shop\n", "шоп", "a.b", "a$b"]),
)

LABEL_KEYS = mostly(
    st.one_of(
        st.sampled_from(
            [
                "team",
                "env",
                "state",
                "mode",
                "user",
                "without",
                "inf",
                "nan",
                "bool",
                "on",
                "by",
                "offset",
                "le",
                "queryid",
                "relname",
                "schemaname",
                "collector",
                "_x",
                "Team",
                "t9",
                "team\n",
            ]
        ),
        st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
    ),
    st.sampled_from(["a b", "9x", "__meta", "job", "database", "datname", "thresholds", "ü", ""]),
)
LABEL_VALUES = st.one_of(st.sampled_from(["checkout", *ODD_STRINGS]), odd_text(0, 10))

DURATIONS = mostly(
    st.one_of(
        st.sampled_from(
            [
                "5m",
                "1m",
                "30s",
                "1h30m",
                "10m",
                "15m",
                "90s",
                "1d",
                "1w",
                "2h",
                "60m",
                "01m",
                "1y",
                "500ms",
                "0s",
                "30s1m",
                "5m5m",
                "0d1w",
                "1m1h",
                "999999999999y",
                "300y",
                "5m\n",
            ]
        ),
        st.from_regex(r"([0-9]{1,3}(ms|s|m|h|d|w|y)){1,2}", fullmatch=True),
    ),
    st.sampled_from(["5M", "5 m", "", "5", "1.5m", "-5m", "١m"]),
)

PERCENTS = mostly(
    st.sampled_from([80, 85, 90, 99.5, 0.5, 100, 33.3, 1e-9, 50.05]),
    st.sampled_from([0, 101, -1, "abc"]),
)
SECONDS = mostly(
    st.sampled_from([300, 0.5, 1e-9, 86400, 1e12, 1800, 3.25, float("inf")]),
    st.sampled_from([0, -1, "x"]),
)
COUNTS = mostly(st.sampled_from([1, 2, 10]), st.sampled_from([0, 1.5]))
PER_SECOND = mostly(st.sampled_from([100, 0, 0.25, 1e6]), st.just(-1))

THRESHOLD_VALUES = {
    "exporter_errors_for": DURATIONS,
    "connections_percent": PERCENTS,
    "connections_for": DURATIONS,
    "deadlocks_window": DURATIONS,
    "lock_waiters": COUNTS,
    "lock_waiters_for": DURATIONS,
    "replication_lag_seconds": SECONDS,
    "replication_lag_for": DURATIONS,
    "long_transaction_seconds": SECONDS,
    "long_transaction_for": DURATIONS,
    "idle_in_transaction_seconds": SECONDS,
    "idle_in_transaction_for": DURATIONS,
    "slow_query_mean_seconds": SECONDS,
    "slow_query_window": DURATIONS,
    "slow_query_for": DURATIONS,
    "cache_hit_percent": PERCENTS,
    "cache_hit_min_blocks_per_second": PER_SECOND,
    "cache_hit_window": DURATIONS,
    "cache_hit_for": DURATIONS,
    "wraparound_percent": PERCENTS,
    "wraparound_for": DURATIONS,
    "restart_window": DURATIONS,
    "host_cpu_percent": PERCENTS,
    "host_cpu_for": DURATIONS,
    "host_memory_available_percent": PERCENTS,
    "host_memory_for": DURATIONS,
    "host_disk_free_percent": PERCENTS,
    "host_disk_for": DURATIONS,
    "postgres_down_for": DURATIONS,  # per database only
}
HOST_KEYS = sorted(k for k in THRESHOLD_VALUES if k.startswith("host_"))
DATABASE_KEYS = sorted(
    k for k in THRESHOLD_VALUES if not k.startswith("host_") and k != "postgres_down_for"
)


@st.composite
def thresholds(draw, keys: list[str]) -> dict:
    chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
    return {key: draw(THRESHOLD_VALUES[key]) for key in chosen}


# ---------------------------------------------------------------- hosts, addresses, paths, URLs

HOSTS = st.one_of(
    st.sampled_from(
        [
            "db1",
            "10.0.0.5",
            "::1",
            "2001:db8::5",
            "db1.example.com",
            "host.docker.internal",
            "fe80::1%eth0",
            "[::1]",
            "db1:5433",
            "db/1",
            "db?x=1",
            "db#1",
            "db[1]",
            "db 1",
            "db@x",
            "db%41",
            "datenbank-ü",
            "059",
            "db_1",
            "-db",
            "db.",
            "postgres://db1",
        ]
    ),
    st.from_regex(
        r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,4}[a-z0-9])?){0,2}", fullmatch=True
    ),
)
PORTS = mostly(st.sampled_from([5432, 5433, 1, 65535, 6432, "5434"]), st.sampled_from([0, 70000]))
BIND_ADDRESSES = mostly(
    st.sampled_from(
        ["0.0.0.0", "127.0.0.1", "::1", "::", "192.168.1.10", "fe80::1%eth0", "::ffff:127.0.0.1"]
    ),
    st.sampled_from(["localhost", "١٢٧.0.0.1"]),
)
BASE_DIRS = st.sampled_from(
    [
        "/opt/pgmon",
        "/srv/pgmon",
        "/opt/pgmon/",
        "//opt/pgmon",
        "/.",
        "/..",
        "/opt/..",
        "/srv/../etc",
        "/etc",
        "/opt/./pgmon",
        "/",
        "opt/pgmon",
        "/var/lib/pgmon",
    ]
)
URLS = st.sampled_from(
    [
        "http://127.0.0.1:9/api/webhooks/1/tok",
        "https://discord.com/api/webhooks/1/x",
        "not a url",
        "discord.com/api/webhooks/1/x",
        "ftp://example.com/hook",
        "https://",
        "http://[::1]:9/hook",
        SECRET_LIKE[1],
    ]
)
TELEGRAM_API_URLS = st.sampled_from(
    [
        "https://api.telegram.org",
        "http://127.0.0.1:9",
        "api.telegram.org",
        "127.0.0.1:8081",
        "https://",
        "ftp://api.telegram.org",
        "https://api.telegram.org/",
    ]
)
CHAT_ID_ENTRIES = st.sampled_from(
    [
        "-1001234567890",
        "123",
        "0",
        "١٢٣",
        "12345678901234567890",
        "007",
        "+5",
        " 42",
        "1_000",
        "9223372036854775807",
        "-9223372036854775809",
        "abc",
        "",
    ]
)
SEVERITIES = mostly(
    st.sampled_from([["critical"], ["critical", "warning"], ["warning"]]),
    st.sampled_from([[], ["critical", "critical"], ["info"]]),
)

# ---------------------------------------------------------------- secrets and the environment

ENV_NAMES = mostly(
    # Valid names, a pasted secret among them: set or not, pgmon must take it and never repeat it.
    st.one_of(st.sampled_from(["PW_0", "PW_1", "PW_2"]), NAME_SHAPED_SECRETS),
    st.sampled_from(
        ["PW-0", "1PW", "PW_0\n", "pw 0", *SECRET_LIKE]
    ),  # invalid names, or a pasted secret
)
PASSWORDS = mostly(
    st.one_of(
        st.sampled_from(
            [
                "l3dger",
                "p@ss:w/rd#%'\"1\\$HOME",
                "-[yaml]:{x}&*a",
                "059",
                "yes",
                "null",
                "пароль١٢٣",
                SECRET_LIKE[0],
                SECRET_LIKE[3],
            ]
        ),
        odd_text(1, 16).filter(lambda text: not any(c.isspace() for c in text)),
    ),
    st.sampled_from(
        [
            "s3cret pass",
            "tab\tbed",
            "hunter2 hunter2 hunter2",
            "trailing-space-pw ",
            "line\nbreak",
            "",
        ]
    ),
)
GRAFANA_PASSWORDS = mostly(
    st.sampled_from(
        [
            "gr@f'ana\"#%",
            "059",
            "hunter2-hunter2-hunter2",
            "pass word",
            "trailing-space-pw ",
            " leading-space-pw",
        ]
    ),
    st.sampled_from(["admin", ""]),
)
# Grafana's secret_key: any 32 characters or more, none at either end white; the shorter or padded are refused.
GRAFANA_SECRET_KEYS = mostly(
    st.one_of(
        st.sampled_from(["k3y/of+grafana=" + "x" * 24, "hunter2-hunter2-hunter2-hunter2-hunter2"]),
        st.text(min_size=32, max_size=64).filter(lambda k: k == k.strip() and "\n" not in k),
    ),
    st.sampled_from(["short-key", " " + "x" * 40, "x" * 40 + "\n", ""]),
)
GRAFANA_USERS = mostly(
    st.one_of(st.sampled_from(["admin", *ODD_STRINGS]), odd_text(1, 10)), st.just("")
)
USERS = st.one_of(st.sampled_from(["mon", *ODD_STRINGS]), odd_text(1, 10))

# ---------------------------------------------------------------- long-term stores (pgmon_remote_write)

STORE_URLS = mostly(
    st.sampled_from(
        [
            "http://vm.internal:8428/api/v1/write",
            "https://mimir.example.com/api/v1/push",
            "http://172.17.0.1:8428/api/v1/write?extra_label=site%3Deu",
            "https://vm.example.com/$tenant/api/v1/write",
            "http://[::1]:9/api/v1/write",
        ]
    ),
    st.sampled_from(
        [
            "https://pgmon:" + SECRET_LIKE[0] + "@vm.example.com/api/v1/write",  # a password in it
            "vm.internal:8428/api/v1/write",
            "ftp://vm.internal/write",
            "https://",
        ]
    ),
)
STORE_HEADER_NAMES = mostly(
    st.sampled_from(["X-Scope-OrgID", "THANOS-TENANT", "X-Tenant$1", "x_org"]),
    st.one_of(
        st.sampled_from(
            [
                "Authorization",
                "host",
                "Content-Type",
                "X-Prometheus-Remote-Write-Version",
                "X Tenant",
            ]
        ),
        odd_text(0, 8),
    ),
)
STORE_HEADER_VALUES = mostly(
    st.sampled_from(["tenant-1", "a$b", "$HOME", "team a|b", "${x}"]),
    st.one_of(st.sampled_from(["", " padded", "line\nbreak"]), odd_text(0, 8)),
)


@st.composite
def stores(draw, environ: dict[str, str]) -> list[dict]:
    """1-2 pgmon_remote_write entries, some odd; their secrets put in ``environ`` (or sometimes missing)."""
    entries = []
    for index in range(draw(st.integers(1, 2))):
        store = {
            "name": draw(mostly(st.sampled_from(["vm", "mimir"]), NAMES)),
            "url": draw(STORE_URLS),
        }
        auth = draw(
            mostly(
                st.sampled_from(["none", "basic", "bearer"]),
                st.sampled_from(["both", "username only"]),
            )
        )
        env = f"STORE_{index}"
        if auth in ("basic", "both", "username only"):
            store["username"] = draw(mostly(st.sampled_from(["pgmon", "a$b"]), USERS))
        if auth in ("basic", "both"):
            store["password_env"] = env
        if auth in ("bearer", "both"):
            store["bearer_token_env"] = env
        if auth != "none" and draw(st.integers(0, 9)):  # sometimes missing: pgmon names the setting
            environ[env] = draw(PASSWORDS)
        if draw(st.booleans()):
            store["headers"] = draw(
                st.dictionaries(STORE_HEADER_NAMES, STORE_HEADER_VALUES, max_size=2)
            )
        if draw(st.booleans()):
            store["query_url"] = draw(STORE_URLS).split("/api/")[0]
        entries.append(store)
    return entries


DBNAMES = st.one_of(st.sampled_from(["shop", "shop's db: main", *ODD_STRINGS]), odd_text(1, 10))


@dataclass
class Case:
    group_data: dict
    environ: dict[str, str]

    @property
    def secrets(self) -> set[str]:
        """Values that must never appear in a DeployError message: the environment's, and what a *_env
        setting holds unless a variable of that name is set (it may be a pasted secret, even one shaped
        like a name); the test checks those at least 12 characters long."""
        return set(self.environ.values()) | {
            v for v in _env_setting_values(self.group_data) if v not in self.environ
        }


def _env_setting_values(value, key: str = ""):
    """The strings of group_data's *_env settings, at any depth."""
    if isinstance(value, str) and key.endswith("_env"):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _env_setting_values(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _env_setting_values(v, key)


# What a case may make odd: the other settings keep plain values, so that most cases render (a case with
# every setting odd would nearly always be refused) and a failure shrinks to the one odd setting it needs.
ODD_KINDS = (
    "name",
    "host",
    "port",
    "dbname",
    "user",
    "password_env",
    "password",
    "sslmode",
    "labels",
    "db_thresholds",
    "flags",
    "grafana_password",
    "secret_key",
    "secret_key_env",
    "channels",
    "discord_url",
    "severities",
    "api_url",
    "chat_ids",
    "watchdog",
    "base_dir",
    "project",
    "grafana_user",
    "bind_address",
    "grafana_port",
    "scrape_interval",
    "alert_timing",
    "thresholds",
    "admin_password_env",
    "remote_write",
    "external_labels",
    "typo",
)
PLAIN_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)


@st.composite
def cases(draw, always: frozenset[str] = frozenset()) -> Case:
    """A case with up to three odd kinds of setting, and those of ``always``."""
    odd = draw(st.sets(st.sampled_from(ODD_KINDS), max_size=3)) | always

    def pick(kind: str, plain, oddly):
        return draw(oddly if kind in odd else plain)

    environ: dict[str, str] = {}
    databases = []
    names = pick(
        "name",
        st.lists(PLAIN_NAMES, min_size=1, max_size=3, unique=True),
        st.lists(NAMES, min_size=1, max_size=3, unique=True),
    )
    for index, name in enumerate(names):
        db = {
            "name": name,
            "host": pick("host", st.sampled_from(["db1", "10.0.0.5", "db2.internal"]), HOSTS),
            "dbname": pick("dbname", st.sampled_from(["shop", "billing"]), DBNAMES),
            "user": pick("user", st.just("mon"), USERS),
            "password_env": pick("password_env", st.just(f"PW_{index}"), ENV_NAMES),
        }
        for key, plain, strategy in (
            ("port", st.none(), PORTS),
            (
                "sslmode",
                st.none(),
                mostly(st.sampled_from(["disable", "require", "verify-full"]), st.just("prefer")),
            ),
            (
                "labels",
                st.sampled_from([None, {"team": "checkout"}]),
                st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3),
            ),
            ("db_thresholds", st.none(), thresholds(DATABASE_KEYS + ["postgres_down_for"])),
        ):
            value = pick(key, plain, strategy)
            if value is not None:
                db["alert_thresholds" if key == "db_thresholds" else key] = value
        if "flags" in odd:
            db.update(
                draw(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "pg_stat_statements": st.booleans(),
                            "table_metrics": st.booleans(),
                        },
                    )
                )
            )
        databases.append(db)
        # Sometimes missing when odd (pgmon must name the variable).
        if not ("password_env" in odd and draw(st.booleans())):
            environ.setdefault(db["password_env"], pick("password", st.just("l3dger"), PASSWORDS))

    data: dict = {"pgmon_databases": databases, "pgmon_grafana_admin_password_env": "GRAFANA_PW"}
    environ["GRAFANA_PW"] = pick("grafana_password", st.just("gr@f'ana\"#%"), GRAFANA_PASSWORDS)
    if pick("secret_key_env", st.just(True), st.booleans()):
        data["pgmon_grafana_secret_key_env"] = "GRAFANA_KEY"
        environ["GRAFANA_KEY"] = pick(
            "secret_key", st.just("k3y/of+grafana=" + "x" * 24), GRAFANA_SECRET_KEYS
        )
    else:
        data["pgmon_grafana_secret_key_env"] = None  # Grafana's default key

    channel = pick("channels", st.sampled_from(["discord", "telegram", "both"]), st.just("none"))
    if channel in ("discord", "both"):
        discord = {"webhook_url_env": "DISCORD_URL"}
        severities = pick("severities", st.none(), SEVERITIES)
        if severities is not None:
            discord["severities"] = severities
        data["pgmon_discord"] = discord
        environ["DISCORD_URL"] = pick(
            "discord_url", st.just("http://127.0.0.1:9/api/webhooks/1/tok"), URLS
        )
    if channel in ("telegram", "both"):
        telegram = {"bot_token_env": "TG_TOKEN", "chat_id_env": "TG_CHAT"}
        api_url = pick("api_url", st.none(), TELEGRAM_API_URLS)
        if api_url is not None:
            telegram["api_url"] = api_url
        data["pgmon_telegram"] = telegram
        environ["TG_TOKEN"] = "123456789:AAHk-SuperSecretBotToken_xyz0123456789"
        environ["TG_CHAT"] = pick(
            "chat_ids",
            st.just("-1001234567890"),
            st.lists(CHAT_ID_ENTRIES, min_size=1, max_size=3).map(",".join),
        )
    if "remote_write" in odd:
        data["pgmon_remote_write"] = draw(stores(environ))
    if "watchdog" in odd:
        watchdog = {"url_env": "WD_URL"}
        interval = draw(st.one_of(st.none(), DURATIONS))
        if interval is not None:
            watchdog["interval"] = interval
        data["pgmon_watchdog"] = watchdog
        environ["WD_URL"] = draw(URLS)

    for kind, key, strategy in (
        ("base_dir", "pgmon_base_dir", BASE_DIRS),
        ("project", "pgmon_project", NAMES),
        ("grafana_user", "pgmon_grafana_admin_user", GRAFANA_USERS),
        ("bind_address", "pgmon_grafana_bind_address", BIND_ADDRESSES),
        (
            "grafana_port",
            "pgmon_grafana_port",
            mostly(st.sampled_from([3000, 3001, 80]), st.just(9090)),
        ),
        (
            "scrape_interval",
            "pgmon_scrape_interval_seconds",
            mostly(st.sampled_from([15, 1, 30]), st.sampled_from([60, 300, 0, 301])),
        ),
        (
            "alert_timing",
            "pgmon_alert_timing",
            st.fixed_dictionaries(
                {},
                optional={
                    k: DURATIONS
                    for k in (
                        "postgres_down_for",
                        "group_wait",
                        "group_interval",
                        "repeat_interval",
                    )
                },
            ),
        ),
        ("thresholds", "pgmon_alert_thresholds", thresholds(DATABASE_KEYS + HOST_KEYS)),
        (
            "admin_password_env",
            "pgmon_grafana_admin_password_env",
            st.one_of(
                st.sampled_from(["GRAFANA_PW", "GRAFANA-PW", SECRET_LIKE[2]]), NAME_SHAPED_SECRETS
            ),
        ),
        (
            "external_labels",
            "pgmon_external_labels",
            st.dictionaries(
                mostly(LABEL_KEYS, st.sampled_from(["pgmon_drill", "pgmon_x"])),
                LABEL_VALUES,
                max_size=2,
            ),
        ),
        ("typo", "pgmon_databse", st.just([])),  # pgmon must name it
    ):
        if kind in odd:
            data[key] = draw(strategy)
    data["ssh_user"] = "deploy"  # not pgmon's: ignored
    return Case(data, environ)
