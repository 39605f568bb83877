"""PGMON_HOST read into pyinfra's inventory entry: ``user@host:port`` as people write it for ssh.

pyinfra 3 takes an inventory name as the host to connect to and does not split a user or a port off it
(``admin@db1`` reaches paramiko as the host name ``admin@db1`` and fails to resolve), so the user and
the port go to the SSH connector as host data instead.

Example:

.. code:: python

    ssh_target("admin@monitor.example.com:2222")
    # ("monitor.example.com", {"ssh_user": "admin", "ssh_port": 2222})
"""

from __future__ import annotations

import ipaddress
import re

from pyinfra.api.exceptions import InventoryError

LOCAL = "@local"
# A user name as ssh and useradd accept it: no '@', ':', white space or shell punctuation.
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
_FORMS = (
    "write host, user@host or user@host:port (an IPv6 address in brackets: user@[2001:db8::5]:22)"
)


def ssh_target(value: str | None) -> tuple[str, dict[str, object]]:
    """The inventory name and SSH host data for PGMON_HOST; this machine (``@local``) when unset.

    A value starting with '@' names a pyinfra connector (``@local``, ``@docker/NAME``) and is passed on
    as it is.
    """
    value = (value or "").strip()
    if not value:
        return LOCAL, {}
    if value.startswith("@"):
        return value, {}
    data: dict[str, object] = {}
    user, at, address = value.rpartition("@")
    if at:
        if not _USER_RE.fullmatch(user):
            raise InventoryError(f"PGMON_HOST: {user!r} is not a user name; {_FORMS}")
        data["ssh_user"] = user
    host, port = _split_port(address)
    if port is not None:
        data["ssh_port"] = port
    return host, data


def _split_port(address: str) -> tuple[str, int | None]:
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not _is_ipv6(host) or (rest and not rest.startswith(":")):
            raise InventoryError(
                f"PGMON_HOST: {address!r} is not [IPv6 address] or [address]:port; {_FORMS}"
            )
        return host, _port(rest[1:]) if rest else None
    if address.count(":") > 1:  # a bare IPv6 address: no port can follow it unambiguously
        if not _is_ipv6(address):
            raise InventoryError(f"PGMON_HOST: {address!r} is not a host name or address; {_FORMS}")
        return address, None
    host, colon, port = address.partition(":")
    if not _HOST_RE.fullmatch(host):
        raise InventoryError(f"PGMON_HOST: {host!r} is not a host name or address; {_FORMS}")
    return host, _port(port) if colon else None


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InventoryError(
            f"PGMON_HOST: the port {text!r} is not a number from 1 to 65535; {_FORMS}"
        )
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False
