"""silence.py's pure parts: the pgmon_silence setting, the amtool commands it runs, and how it reads their answers."""

import json
import shlex
from datetime import UTC, datetime

import pytest

import tasks.silence
from tasks.reporting import printable
from tasks.settings import build_settings
from tasks.silence import (
    add_command,
    end_command,
    left,
    list_command,
    matcher_text,
    parse_time,
    show,
    silence_lines,
    split_exit,
)

from .conftest import ENVIRON, error_for, group_data

SILENCE_ID = "07d09fe7-29a5-4622-a5cd-c6cd6a2730a1"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def settings_with(silence: dict, **overrides):
    return build_settings(
        group_data(pgmon_silence=silence, pgmon_project="mon", **overrides), ENVIRON
    )


def argv(command: str) -> list[str]:
    """The amtool command line of one of silence.py's shell commands."""
    shell, _, tail = command.partition(" 2>&1; ")
    assert tail == "echo pgmon-exit=$?"
    return shlex.split(shell)


AMTOOL = [
    "docker",
    "exec",
    "mon-alertmanager",
    "amtool",
    "--alertmanager.url=http://127.0.0.1:9093",
    "--http.config.file=/etc/alertmanager/secrets/api_client.yml",
]


def test_a_database_is_silenced_by_its_name_with_the_reason_and_who_as_one_argument_each():
    reason = 'VACUUM FULL; it\'s "big" $(rm -rf /) `x` & ticket #12'
    settings = settings_with({"database": "shop", "for": "2h", "reason": reason})
    assert argv(add_command(settings, "ann@laptop")) == [
        *AMTOOL,
        "silence",
        "add",
        "--duration=2h",
        f"--comment={reason}",
        "--author=ann@laptop",
        'database="shop"',
    ]


def test_a_server_is_silenced_by_host_and_port_as_alerts_carry_it():
    settings = settings_with({"server": "db2:5433", "for": "30m", "reason": "minor upgrade"})
    assert argv(add_command(settings, "x"))[-1] == 'server="db2:5433"'
    assert matcher_text(settings.config.silence) == 'server="db2:5433"'
    ipv6 = group_data()["pgmon_databases"] + [
        {"name": "v6", "host": "::1", "dbname": "v6", "user": "mon", "password_env": "PW_LEDGER"}
    ]
    settings = build_settings(
        group_data(
            pgmon_databases=ipv6, pgmon_silence={"server": "[::1]:5432", "for": "1h", "reason": "r"}
        ),
        ENVIRON,
    )
    assert matcher_text(settings.config.silence) == 'server="[::1]:5432"'


def test_listing_and_ending_use_amtool_in_the_alertmanager_container():
    assert argv(list_command(settings_with(None))) == [*AMTOOL, "--output=json", "silence", "query"]
    assert argv(end_command(settings_with({"end": SILENCE_ID}))) == [
        *AMTOOL,
        "silence",
        "expire",
        SILENCE_ID,
    ]


def test_the_exit_status_comes_back_with_the_output():
    assert split_exit([SILENCE_ID, "pgmon-exit=0"]) == (0, [SILENCE_ID])
    assert split_exit(["amtool: error: comment required by config", "", "pgmon-exit=1"]) == (
        1,
        ["amtool: error: comment required by config"],
    )
    assert split_exit(["cut short"]) == (255, ["cut short"])


ANSWER = [  # amtool 0.33's --output=json silence query, plus an expired one and a regex matcher
    {
        "id": SILENCE_ID,
        "status": {"state": "active"},
        "updatedAt": "2026-11-22T09:00:04.433Z",
        "comment": "VACUUM FULL\nof orders",
        "createdBy": "ann@laptop",
        "endsAt": "2026-11-22T11:59:04.431Z",
        "matchers": [{"isEqual": True, "isRegex": False, "name": "database", "value": "shop"}],
        "startsAt": "2026-11-22T09:00:04.433Z",
    },
    {
        "id": "fe29b8f6-5310-4c48-8064-0962b4fc82bf",
        "status": {"state": "active"},
        "comment": "upgrade",
        "createdBy": "bob@desk",
        "endsAt": "2026-11-22T10:20:00.123456789Z",
        "startsAt": "2026-11-22T09:50:00Z",
        "matchers": [
            {"isEqual": True, "isRegex": False, "name": "server", "value": "db2:5433"},
            {"isEqual": False, "isRegex": True, "name": "alertname", "value": "Host.*"},
        ],
    },
    {
        "id": "11111111-2222-4333-8444-555555555555",
        "status": {"state": "expired"},
        "comment": "old",
        "createdBy": "x",
        "endsAt": "2026-11-22T09:00:00Z",
        "startsAt": "2026-11-22T08:00:00Z",
        "matchers": [],
    },
]


def test_active_silences_are_listed_soonest_to_end_first_with_who_and_why():
    assert silence_lines(json.dumps(ANSWER), NOW) == [
        (
            'silence fe29b8f6-5310-4c48-8064-0962b4fc82bf  server="db2:5433", alertname!~"Host.*"  '
            "until 2026-11-22 10:20 UTC (20m left)  by bob@desk: upgrade"
        ),
        (
            f'silence {SILENCE_ID}  database="shop"  until 2026-11-22 11:59 UTC (1h59m left)  '
            "by ann@laptop: VACUUM FULL of orders"
        ),
    ]
    assert silence_lines("[]", NOW) == ["no active silence"]
    assert silence_lines("", NOW) == ["no active silence"]


def test_times_and_what_is_left():
    assert parse_time("2026-11-22T10:20:00.123456789Z") == datetime(
        2026, 11, 22, 10, 20, tzinfo=UTC
    )
    assert parse_time("2026-11-22T12:20:00+02:00") == datetime(2026, 11, 22, 10, 20, tzinfo=UTC)
    assert left(datetime(2026, 11, 24, 11, 5, tzinfo=UTC), NOW) == "2d1h5m"
    assert left(datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC), NOW) == "under a minute"


@pytest.mark.parametrize(
    "silence, problem",
    [
        (
            {"database": "shp", "for": "2h", "reason": "x"},
            "pgmon_silence.database: 'shp' is not a configured database; did you mean 'shop'?",
        ),
        (
            {"server": "db9:5432", "for": "2h", "reason": "x"},
            "pgmon_silence.server: 'db9:5432' is not the server (host:port) of a configured database: db1:5432, db2:5433",
        ),
        ({"database": "shop"}, 'pgmon_silence: say for how long, e.g. "for": "2h"'),
        ({"database": "shop", "for": "1h"}, 'say why, e.g. "reason": "VACUUM FULL of orders"'),
        (
            {"for": "1h", "reason": "r"},
            "pgmon_silence: give either database (pgmon's name for it) or server",
        ),
        (
            {"database": "shop", "server": "db1:5432", "for": "1h", "reason": "r"},
            "give either database",
        ),
        (
            {"database": "shop", "for": "40d", "reason": "r"},
            "pgmon_silence.for: '40d' is longer than 30d",
        ),
        (
            {"database": "shop", "for": "0s", "reason": "r"},
            "pgmon_silence.for: '0s' must be longer than 0s",
        ),
        (
            {"database": "shop", "for": "2 hours", "reason": "r"},
            "pgmon_silence.for: '2 hours' is not a Prometheus duration",
        ),
        ({"database": "shop", "for": "1h", "reason": "  "}, "pgmon_silence.reason: say why"),
        (
            {"database": "shop", "for": "1h", "reason": "a\nb"},
            "pgmon_silence.reason: write one line of at most 300",
        ),
        (
            {"database": "shop", "for": "1h", "reason": "r" * 301},
            "write one line of at most 300 characters",
        ),
        ({"end": "abc"}, "pgmon_silence.end: 'abc' is not a silence id"),
        (
            {"end": SILENCE_ID, "database": "shop"},
            "pgmon_silence: end ends a silence by its id and takes no other key",
        ),
        (
            {"database": "shop", "for": "1h", "reason": "r", "duration": "1h"},
            "pgmon_silence.duration: unknown key",
        ),
        ("shop", "pgmon_silence: Input should be a valid dictionary"),
    ],
)
def test_a_silence_is_checked_before_the_host_is_touched(silence, problem):
    assert problem in error_for(group_data(pgmon_silence=silence))


def test_a_valid_silence_reads_back():
    silence = settings_with(
        {"database": "shop", "for": "2h", "reason": "  VACUUM FULL  "}
    ).config.silence
    assert (silence.database, silence.server, silence.for_, silence.reason, silence.end) == (
        "shop",
        None,
        "2h",
        "VACUUM FULL",
        None,
    )
    assert settings_with({"end": SILENCE_ID}).config.silence.end == SILENCE_ID
    assert settings_with(None).config.silence is None


class HostPrinting:
    """pyinfra's host as silence.py's ``show`` uses it: executing, printing what it is given."""

    def __init__(self):
        self.state = type("State", (), {"is_executing": True})()
        self.printed: list[str] = []

    def log(self, text: str) -> None:
        self.printed.append(text)


def test_a_silence_listing_cannot_drive_the_terminal(monkeypatch):
    """Whoever can add a silence writes its author and comment: escapes in them are shown, not obeyed."""
    hostile = {
        **ANSWER[0],
        "createdBy": "eve\x1b]0;owned\x07",
        "comment": "ok\x1b[2J\x1b[1;1H\u202eevil",
    }
    host = HostPrinting()
    monkeypatch.setattr(tasks.silence, "host", host)
    monkeypatch.setattr(
        tasks.silence,
        "host_output",
        lambda _host, _command: [json.dumps([hostile]), "pgmon-exit=0"],
    )
    list(show._inner(settings_with(None)))
    (line,) = host.printed
    assert "by eve\\x1b]0;owned\\x07: ok\\x1b[2J\\x1b[1;1H\\u202eevil" in line
    assert line == printable(line)  # nothing left to escape


def test_printable_keeps_text_people_write():
    assert printable("VACUUM FULL of «orders» 日本 👍 é") == "VACUUM FULL of «orders» 日本 👍 é"
    assert printable("a\rb\x00c\x7fd\x9be") == "a\\rb\\x00c\\x7fd\\x9be"
