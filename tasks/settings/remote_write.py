"""pgmon_remote_write: the stores Prometheus copies every sample to (docs/storage.md).

Any store that speaks Prometheus's remote-write protocol: VictoriaMetrics, Grafana Mimir, Thanos Receive. Its
credentials, like every secret, are named by environment variables (load.py reads them); the headers a store
wants besides (a tenant) are not secret and stand here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, model_validator

from .fields import EnvName, Name, Strict, _check_http_url

# Headers Prometheus sets itself and refuses in remote_write's `headers` (its config.go, reservedHeaders);
# Authorization is what password_env and bearer_token_env are for.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-encoding",
        "content-length",
        "content-type",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "www-authenticate",
        "accept-encoding",
        "x-prometheus-remote-write-version",
        "x-prometheus-remote-read-version",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    }
)
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP token (RFC 9110)
_HEADER_VALUE_RE = re.compile(
    r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?"
)  # visible ASCII, no edge spaces


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    problems = []
    for name, value in headers.items():
        if not _HEADER_NAME_RE.fullmatch(name):
            problems.append(f"{name!r} is not an HTTP header name (letters, digits and -)")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(
                f"{name!r} is set by Prometheus itself"
                + (
                    "; for a password or token use password_env or bearer_token_env"
                    if name.lower() == "authorization"
                    else ""
                )
            )
        elif not _HEADER_VALUE_RE.fullmatch(value):
            problems.append(
                f"{name}: give a value of visible ASCII characters, without line breaks or edge spaces"
            )
    if problems:
        raise ValueError("; ".join(problems))
    return headers


def _check_no_credentials(value: str) -> str:
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        # Not repeated, checked before the URL check that would: what stands before the @ may be a password.
        raise ValueError(
            "holds a user name or password before its host; put the user name in username and the password in "
            "an environment variable named by password_env"
        )
    return value


def _check_username(value: str) -> str:
    if not value or ":" in value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("give the user name without ':', spaces or control characters")
    return value


def _check_label_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            f"{value!r} is not a label name (letters, digits and _, not a digit first)"
        )
    return value


ReplicaLabel = Annotated[str, AfterValidator(_check_label_name)]
StoreUrl = Annotated[str, AfterValidator(_check_no_credentials), AfterValidator(_check_http_url)]
Headers = Annotated[dict[str, str], AfterValidator(_check_headers)]
UserName = Annotated[str, AfterValidator(_check_username)]


class RemoteWrite(Strict):
    """One store. ``name`` tells it apart in Prometheus's queue metrics and in verification.

    Example (group_data/all.py):

    .. code:: python

        pgmon_remote_write = [
            {
                "name": "victoria",
                "url": "https://vm.example.com/api/v1/write",
                "username": "pgmon",
                "password_env": "PGMON_VICTORIA_PASSWORD",
                "query_url": "https://vm.example.com",
            }
        ]
    """

    name: Name
    url: StoreUrl
    # Basic auth: the user name here, the password in the variable password_env names.
    username: UserName | None = None
    password_env: EnvName | None = None
    # Or a bearer token, in the variable bearer_token_env names.
    bearer_token_env: EnvName | None = None
    headers: Headers = {}
    # Where Grafana reads the store back (its Prometheus-compatible query API), with the same credentials and
    # headers: a data source of its own (docs/storage.md). None: written only.
    query_url: StoreUrl | None = None
    # In an HA group, what the store is told of which member sent a sample (docs/cluster.md). None: nothing, the
    # members' copies are one series (VictoriaMetrics keeps one sample per -dedup.minScrapeInterval). A label
    # name: the member's name under it, for a store that deduplicates by it (Mimir's HA tracker: __replica__).
    replica_label: ReplicaLabel | None = None

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> RemoteWrite:
        if (self.username is None) != (self.password_env is None):
            raise ValueError(
                "username and password_env go together (basic auth): set both, or neither"
            )
        if self.password_env is not None and self.bearer_token_env is not None:
            raise ValueError(
                "set password_env (basic auth) or bearer_token_env, not both: a store takes one"
            )
        return self

    @property
    def secret_env(self) -> str | None:
        """The variable holding this store's password or token, if it has one."""
        return self.password_env or self.bearer_token_env
