"""From host data and the environment to what a command runs with.

``SettingsInput`` is every ``pgmon_*`` key: the deploy's settings (models.py) and the single commands'
options (run_options.py), validated together. ``load_config`` gives a ``HostConfig`` (no secret: what
uninstall, backup and restore need); ``load_settings`` gives ``Settings``, the same plus the secrets
``resolve_secrets`` reads from the controller's environment. Secrets are never settings: a setting
names the *environment variable* that holds the secret. Every problem is found before any operation
touches the host and reported together (errors.py).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from .cluster import CLUSTER_KEY, with_members
from .errors import SETTING_PREFIX, DeployError, format_validation_error, problem_report
from .fields import http_url_problem
from .images import DEFAULT_IMAGES, Component, image_version
from .models import Database, DeploySettings, Discord, Telegram, Watchdog
from .run_options import RunOptions, silence_target_problem


class SettingsInput(RunOptions, DeploySettings):
    """What group_data may say, without the ``pgmon_`` prefix: the deploy's settings and the single
    commands' options, so that a typo in either is named whichever command runs."""

    @model_validator(mode="after")
    def _silence_target(self) -> SettingsInput:
        problem = silence_target_problem(self.silence, self.databases)
        if problem:
            raise ValueError(problem)
        return self


def unknown_setting_lines(keys: list[str]) -> list[str]:
    """A problem line for each ``pgmon_*`` key that is no setting, with the setting it may mean."""
    known = [SETTING_PREFIX + name for name in SettingsInput.model_fields]
    lines = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/configuration.md"
        lines.append(f"{key}: unknown pgmon setting{hint}")
    return lines


def validate_host_data(
    host_data: Mapping[str, object],
    command: str = "deploy",
    environ: Mapping[str, str] | None = None,
) -> SettingsInput:
    """The ``pgmon_*`` keys of ``host_data``, validated; a DeployError lists every problem, unknown keys
    included. With ``environ``, the secrets of whatever did validate are looked for too, so that one
    round reports every problem (``environ`` is the deploy's: the single commands read fewer)."""
    raw = {
        k[len(SETTING_PREFIX) :]: v for k, v in host_data.items() if k.startswith(SETTING_PREFIX)
    }
    known = set(SettingsInput.model_fields)
    problems = unknown_setting_lines(sorted(SETTING_PREFIX + k for k in raw if k not in known))
    try:
        config = SettingsInput(**{k: v for k, v in raw.items() if k in known})
    except ValidationError as error:
        problems += format_validation_error(error, SettingsInput)
        if environ is not None:
            valid_part, indexes = _valid_part(raw)
            problems += resolve_secrets(valid_part, environ, indexes)[1]
        raise DeployError(problem_report(problems, command)) from None
    if problems:
        raise DeployError(problem_report(problems, command))
    return config


# The settings that name secrets, besides the databases' password_env.
_SECRET_SETTINGS = (
    "grafana_admin_password_env",
    "grafana_secret_key_env",
    "discord",
    "telegram",
    "watchdog",
    "grafana_certificate",
    "remote_write",
)


def _valid_part(raw: Mapping[str, object]) -> tuple[SettingsInput, list[int]]:
    """The secret-naming settings of ``raw`` that are valid on their own, with the databases whose
    entries are, and those entries' indexes in ``raw``; the rest at its defaults."""
    fields: dict[str, object] = {}
    for key in _SECRET_SETTINGS:
        if key in raw:
            try:
                fields[key] = getattr(SettingsInput(**{key: raw[key]}), key)
            except ValidationError:
                pass
    databases, indexes = [], []
    entries = raw.get("databases")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            databases.append(Database.model_validate(entry))
            indexes.append(index)
        except ValidationError:
            pass
    return SettingsInput.model_construct(databases=databases, **fields), indexes


class HostConfig(BaseModel):
    """The validated settings without any secret: what uninstall, backup and restore need (they read none)."""

    model_config = ConfigDict(frozen=True)

    config: SettingsInput

    @property
    def databases(self) -> list[Database]:
        """Every database with an exporter of its own: those listed, then each discovered server's own."""
        return self.config.databases + self.config.server_databases()

    def image(self, component: Component) -> str:
        return self.config.images.get(component, DEFAULT_IMAGES[component])

    def version(self, component: Component) -> tuple[int, int]:
        """The component's version, from its image's tag; a tag that does not say (a digest, a mirror's own
        naming) counts as the default's."""
        return image_version(self.image(component)) or image_version(DEFAULT_IMAGES[component])


class ChannelSettings(HostConfig):
    """The validated settings plus the alert channels' secrets: what the test alert needs."""

    discord_webhook_url: SecretStr | None
    telegram_bot_token: SecretStr | None
    telegram_chat_ids: tuple[int, ...]
    watchdog_url: SecretStr | None


class Settings(ChannelSettings):
    """The validated settings plus every secret the deploy reads from the controller's environment."""

    database_passwords: dict[str, SecretStr]
    grafana_admin_password: SecretStr
    grafana_secret_key: SecretStr | None = (
        None  # None: Grafana's public default (pgmon_grafana_secret_key_env)
    )
    # Each pgmon_remote_write store's password or bearer token, by the store's name.
    remote_write_secrets: dict[str, SecretStr] = {}
    # pgmon_grafana_certificate's PEM certificate (chain) and key, read on the controller (tasks/grafana_tls.py).
    grafana_tls_certificate: bytes | None = None
    grafana_tls_key: SecretStr | None = None


def host_data(current_host) -> dict[str, object]:
    """``current_host``'s data, its ``pgmon_cluster`` completed from the inventory (cluster.py)."""
    data = current_host.data.dict()
    if not data.get(CLUSTER_KEY):
        return data
    return with_members(
        current_host.name,
        data,
        ((other.name, other.data.dict()) for other in current_host.inventory),
    )


def load_config(current_host, command: str = "deploy") -> HostConfig:
    """Validate ``current_host``'s pgmon data as the deploy does (unknown keys included), reading no
    secret; ``command`` names what refuses bad settings ("pgmon cannot uninstall; ...")."""
    return HostConfig(config=validate_host_data(host_data(current_host), command))


def load_channel_settings(current_host, command: str = "send a test alert") -> ChannelSettings:
    """``current_host``'s settings and the alert channels' secrets, for the test alert and the drill: no
    database password, no Grafana password."""
    config = validate_host_data(host_data(current_host), command)
    channels, problems = channel_secrets(config, os.environ)
    if problems:
        raise DeployError(problem_report(problems, command))
    return ChannelSettings(config=config, **channels)


def load_settings(current_host) -> Settings:
    """Validate ``current_host``'s pgmon data and read its secrets from this process's environment."""
    return build_settings(host_data(current_host), os.environ)


def build_settings(
    host_data: Mapping[str, object], environ: Mapping[str, str] = os.environ
) -> Settings:
    """Validate pgmon's host data and read the secrets it names from ``environ``.

    Example:

    .. code:: python

        settings = build_settings({"pgmon_databases": [...], "pgmon_discord": {}}, os.environ)
    """
    config = validate_host_data(host_data, "deploy", environ)
    problems = []
    if not config.databases and not config.servers:
        problems.append(
            "pgmon_databases: no database is configured; add one entry per database in "
            "group_data/all.py (name, host, port, dbname, user, password_env), or a server whose "
            "databases pgmon finds itself in pgmon_servers"
        )
    if config.discord is None and config.telegram is None:
        problems.append(
            "pgmon_discord / pgmon_telegram: no alert channel is configured; set at least one "
            "in group_data/all.py, e.g. pgmon_discord = {} (webhook URL read from "
            "PGMON_DISCORD_WEBHOOK_URL)"
        )
    secrets, secret_problems = resolve_secrets(config, environ)
    problems += secret_problems
    if problems:
        raise DeployError(problem_report(problems))
    return Settings(config=config, **secrets)


# pgmon's own default variable names: public, so a missing one is named in the problem (the quick start's
# `export PGMON_DISCORD_WEBHOOK_URL=...`). Any other name a *_env setting gives may be a secret pasted there
# by mistake, shaped like a name (Winter2024_shop_Pw): when no such variable is set it is never repeated;
# the problem names the setting, where the user reads what they wrote.
_DEFAULT_ENV_NAMES = frozenset(
    field.default
    for model in (DeploySettings, Discord, Telegram, Watchdog)
    for name, field in model.model_fields.items()
    if name.endswith("_env") and isinstance(field.default, str)
)


class _SecretReader:
    """Reads secrets from ``environ`` by the variable names settings give. A problem never repeats the
    value, nor the name of a variable that is not set unless it is pgmon's default; a variable missing
    for several settings is one problem naming them all."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[str] = []
        self.missing: dict[str, list[str]] = {}  # variable -> the settings that name it, in order
        self.hints: dict[str, str] = {}  # variable -> what to put in it, said when it is missing

    def read(
        self,
        field: str,
        env_name: str,
        problem: Callable[[str], str | None],
        missing_hint: str = "",
    ) -> SecretStr | None:
        """The secret, if ``problem(value)`` finds nothing wrong."""
        value = self.environ.get(env_name)
        if not value:
            self.missing.setdefault(env_name, []).append(field)
            if missing_hint:
                self.hints[env_name] = missing_hint
            return None
        wrong = problem(value)
        if wrong:
            self.problems.append(f"{field}: the value of {env_name} {wrong}")
            return None
        return SecretStr(value)

    def all_problems(self) -> list[str]:
        missing = [
            (
                f"{', '.join(fields)}: the environment variable {env_name} is not set; export it before "
                "running pyinfra"
                if env_name in _DEFAULT_ENV_NAMES
                else f"{', '.join(fields)}: the environment variable named there is not set (the name "
                "is not repeated: a secret pasted there by mistake can look like one); export that "
                "variable before running pyinfra, and write its NAME there, never the secret"
            )
            + (f" ({self.hints[env_name]})" if env_name in self.hints else "")
            for env_name, fields in self.missing.items()
        ]
        return missing + self.problems


def channel_secrets(
    config: SettingsInput, environ: Mapping[str, str], reader: _SecretReader | None = None
) -> tuple[dict[str, object], list[str]]:
    """The alert channels' secrets ``config`` names, as ChannelSettings' fields, and the problems found."""
    reader = reader or _SecretReader(environ)
    secrets: dict[str, object] = {
        "discord_webhook_url": None,
        "telegram_bot_token": None,
        "telegram_chat_ids": (),
        "watchdog_url": None,
    }
    if config.discord:
        secrets["discord_webhook_url"] = reader.read(
            "pgmon_discord.webhook_url_env", config.discord.webhook_url_env, http_url_problem
        )
    if config.telegram:
        secrets["telegram_bot_token"] = reader.read(
            "pgmon_telegram.bot_token_env", config.telegram.bot_token_env, _bot_token_problem
        )
        chats = reader.read(
            "pgmon_telegram.chat_id_env", config.telegram.chat_id_env, _chat_ids_problem
        )
        if chats is not None:
            secrets["telegram_chat_ids"] = tuple(
                dict.fromkeys(int(chat.strip(" ")) for chat in chats.get_secret_value().split(","))
            )
    if config.watchdog:
        secrets["watchdog_url"] = reader.read(
            "pgmon_watchdog.url_env", config.watchdog.url_env, http_url_problem
        )
    return secrets, reader.all_problems()


def resolve_secrets(
    config: SettingsInput, environ: Mapping[str, str], indexes: list[int] | None = None
) -> tuple[dict[str, object], list[str]]:
    """Every secret ``config`` names, as Settings' fields: each from the variable of ``environ`` its
    setting names, Grafana's private key from its file; and a problem line for each secret missing or
    of the wrong shape. ``indexes`` are the databases' places in pgmon_databases, where not 0, 1, ..."""
    reader = _SecretReader(environ)
    problems = []
    logins = [
        (f"pgmon_databases[{index}]", db, _database_password_problem)
        for index, db in zip(indexes or range(len(config.databases)), config.databases, strict=True)
    ] + [
        (f"pgmon_servers[{index}]", server, _probe_password_problem)
        for index, server in enumerate(config.servers)
    ]
    passwords = {}
    for where, entry, problem in logins:
        value = reader.read(f"{where}.password_env ({entry.name})", entry.password_env, problem)
        if value is not None:
            passwords[entry.name] = value
    grafana_password = reader.read(
        "pgmon_grafana_admin_password_env",
        config.grafana_admin_password_env,
        _grafana_password_problem,
    )
    secret_key = None
    if config.grafana_secret_key_env is not None:
        secret_key = reader.read(
            "pgmon_grafana_secret_key_env",
            config.grafana_secret_key_env,
            _grafana_secret_key_problem,
            missing_hint="the key Grafana encrypts its stored credentials with: for a new deployment make "
            "one, openssl rand -base64 32, and keep it with the other secrets; a Grafana deployed before "
            "pgmon set one: docs/security.md, Grafana's secret_key",
        )
    store_secrets = {}
    for index, store in enumerate(config.remote_write):
        if store.secret_env is not None:
            field = "password_env" if store.password_env else "bearer_token_env"
            value = reader.read(
                f"pgmon_remote_write[{index}].{field} ({store.name})",
                store.secret_env,
                _store_secret_problem,
            )
            if value is not None:
                store_secrets[store.name] = value
    secrets, channel_problems = channel_secrets(config, environ, reader)
    secrets.update(
        database_passwords=passwords,
        grafana_admin_password=grafana_password,
        grafana_secret_key=secret_key,
        remote_write_secrets=store_secrets,
    )
    if config.grafana_certificate is not None:
        # Imported here, not at the top: grafana_tls is a deploy step, which may import settings itself.
        from ..grafana_tls import read_certificate

        certificate, key, tls_problems = read_certificate(
            config.grafana_certificate.cert_file, config.grafana_certificate.key_file
        )
        problems += tls_problems
        secrets["grafana_tls_certificate"] = certificate
        secrets["grafana_tls_key"] = (
            None if key is None else SecretStr(key.decode("ascii", errors="replace"))
        )
    return secrets, channel_problems + problems


def _database_password_problem(value: str) -> str | None:
    # Written to a pgpass line: anything but a line break works (PGPASSFILE; never in a DSN or a log).
    if "\n" in value or "\r" in value:
        return "holds a line break; give this monitoring user a password without one"
    return None


def _probe_password_problem(value: str) -> str | None:
    # Also in the probing exporter's connection string, which postgres_exporter (0.19) splits at spaces: a
    # piece without '=' fails the probe and puts the whole string, password included, in its log.
    if " " in value:
        return (
            "holds a space, which postgres_exporter's probe would write into its log; give this "
            "monitoring user a password without spaces"
        )
    return _database_password_problem(value)


def _grafana_password_problem(value: str) -> str | None:
    if value == "admin":
        return "is 'admin'; choose a real password"
    if value != value.strip() or "\n" in value or "\r" in value:
        return (
            "starts or ends with white space or holds a line break, which Grafana drops from the "
            "password file; choose another"
        )
    return None


GRAFANA_SECRET_KEY_MIN_LENGTH = 32


def _grafana_secret_key_problem(value: str) -> str | None:
    if value != value.strip() or "\n" in value or "\r" in value:
        return "starts or ends with white space or holds a line break, which Grafana drops; make another"
    if len(value) < GRAFANA_SECRET_KEY_MIN_LENGTH:
        return (
            f"is shorter than {GRAFANA_SECRET_KEY_MIN_LENGTH} characters; make a random one, e.g. "
            "openssl rand -base64 32, and keep it with the other secrets"
        )
    return None


def _store_secret_problem(value: str) -> str | None:
    # Prometheus trims what it reads from a credentials file: the store would be sent another value.
    if value != value.strip() or "\n" in value or "\r" in value:
        return "starts or ends with white space or holds a line break, which Prometheus drops; fix the value"
    return None


def _bot_token_problem(value: str) -> str | None:
    if re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", value):
        return None
    return (
        "is not a bot token as @BotFather gives it (digits, ':', then letters, digits, '_' or '-')"
    )


# ASCII digits only: int() would also read '١٢٣' as 123.
_CHAT_ID_RE = re.compile(r"-?[1-9][0-9]{0,15}")


def _chat_ids_problem(value: str) -> str | None:
    if all(_CHAT_ID_RE.fullmatch(chat.strip(" ")) for chat in value.split(",")):
        return None
    return (
        "must hold a Telegram chat id (e.g. -1001234567890: an optional '-', then up to 16 digits, not 0), "
        "or several separated by commas"
    )
