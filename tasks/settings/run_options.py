"""What single commands read: options for one run, mostly given with ``--data``. None of them changes
what the deploy installs: the files, containers and checks it makes never depend on them.

    pgmon_silence                silence.py: the silence to add or end (docs/alerts.md, "Maintenance silences")
    pgmon_uninstall_delete_data  uninstall.py: also delete the data volumes
    pgmon_backup_dir             backup.py: the controller's folder for the archive
    pgmon_restore_from           restore.py: the archive to restore
    pgmon_take_over_lock         any run, a deploy too: end a hung run's hold on the host's lock (tasks/host_lock.py)
    pgmon_demo_images            demo.py: the demo's own PostgreSQL and busybox images (tasks/demo/config.py)
    pgmon_demo_incident          demo.py: start or end the demo's incident

They are host-data keys like the deploy's and are validated with them (load.py's SettingsInput), so
that a typo in either is named whichever command runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from .fields import Interval, Name, Strict, duration_seconds
from .models import Database

SILENCE_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SILENCE_MAX_SECONDS = 30 * 86400
SILENCE_REASON_MAX = 300


def _check_silence_for(value: str) -> str:
    if duration_seconds(value) > SILENCE_MAX_SECONDS:
        raise ValueError(
            f"{value!r} is longer than 30d; silence again when it ends, so a forgotten silence "
            "cannot hide a database for good"
        )
    return value


def _check_reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(
            "say why (it is shown with the silence to whoever looks at it), e.g. "
            "'VACUUM FULL of orders, ticket OPS-123'"
        )
    if len(value) > SILENCE_REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"write one line of at most {SILENCE_REASON_MAX} characters")
    return value


def _check_silence_id(value: str) -> str:
    if not SILENCE_ID_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a silence id: give the id silence.py lists (e.g. "
            "'0a1b2c3d-0000-4000-8000-123456789abc')"
        )
    return value


class Silence(Strict):
    """``--data pgmon_silence='{...}'`` for silence.py: silence one database, or one server, for a while with a
    reason; or end a silence early by its id. Without it, silence.py lists the active silences."""

    database: Name | None = None
    server: str | None = None  # host:port, as alerts and `database X on host:port` name it
    for_: Annotated[Interval, AfterValidator(_check_silence_for)] | None = Field(
        default=None, alias="for"
    )
    reason: Annotated[str, AfterValidator(_check_reason)] | None = None
    end: Annotated[str, AfterValidator(_check_silence_id)] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Silence:
        if self.end is not None:
            if any(
                value is not None for value in (self.database, self.server, self.for_, self.reason)
            ):
                raise ValueError("end ends a silence by its id and takes no other key")
            return self
        problems = []
        if (self.database is None) == (self.server is None):
            problems.append(
                "give either database (pgmon's name for it) or server (host:port) to silence, "
                "or end (a silence id) to end one"
            )
        if self.for_ is None:
            problems.append(
                'say for how long, e.g. "for": "2h" (a Prometheus duration, at most 30d)'
            )
        if self.reason is None:
            problems.append('say why, e.g. "reason": "VACUUM FULL of orders"')
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RunOptions(Strict):
    """The single commands' keys, without the ``pgmon_`` prefix; each command reads its own."""

    take_over_lock: bool = False
    uninstall_delete_data: bool = False
    # In the controller's home, not the folder pyinfra runs in: that is usually a git repository.
    backup_dir: str = Field(default="~/pgmon-backups", min_length=1)
    restore_from: str | None = None
    silence: Silence | None = None
    # Known here so that group_data may hold them for demo.py; tasks/demo checks their values.
    demo_images: dict[str, str] = {}
    demo_incident: str | None = None


def silence_target_problem(silence: Silence | None, databases: Sequence[Database]) -> str | None:
    """What is wrong with the database or server a silence names: it must be a configured one, as alerts
    carry them; None if nothing is."""
    if silence is None or silence.end is not None:
        return None
    known = [db.name for db in databases]
    if silence.database is not None and silence.database not in known:
        close = difflib.get_close_matches(silence.database, known, n=1)
        return f"silence.database: {silence.database!r} is not a configured database" + (
            f"; did you mean {close[0]!r}?" if close else f" ({', '.join(known) or 'none'})"
        )
    servers = list(dict.fromkeys(db.server for db in databases))
    if silence.server is not None and silence.server not in servers:
        return (
            f"silence.server: {silence.server!r} is not the server (host:port) of a configured "
            f"database: {', '.join(servers) or 'none'}"
        )
    return None
