"""PGMON_HOST as people write it for ssh, read into pyinfra's inventory entry (tasks/ssh_target.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyinfra.api.exceptions import InventoryError

from tasks.ssh_target import ssh_target


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("@local", {})),
        ("", ("@local", {})),
        ("  ", ("@local", {})),
        ("@local", ("@local", {})),
        ("@docker/abc", ("@docker/abc", {})),
        ("monitor.example.com", ("monitor.example.com", {})),
        ("admin@monitor.example.com", ("monitor.example.com", {"ssh_user": "admin"})),
        ("admin@10.0.0.5:2222", ("10.0.0.5", {"ssh_user": "admin", "ssh_port": 2222})),
        ("monitor:22", ("monitor", {"ssh_port": 22})),
        ("2001:db8::5", ("2001:db8::5", {})),
        ("ops@[2001:db8::5]:2200", ("2001:db8::5", {"ssh_user": "ops", "ssh_port": 2200})),
        ("[::1]", ("::1", {})),
        ("first.last@host", ("host", {"ssh_user": "first.last"})),
    ],
)
def test_forms_people_write(value, expected):
    assert ssh_target(value) == expected


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("admin@host:0", "the port '0'"),
        ("admin@host:65536", "the port '65536'"),
        ("admin@host:ssh", "the port 'ssh'"),
        ("admin@host:", "the port ''"),
        ("ad min@host", "'ad min' is not a user name"),
        ("a@b@host", "'a@b' is not a user name"),
        ("admin@", "'' is not a host name"),
        ("admin@host name", "'host name' is not a host name"),
        ("ssh://admin@host", "'ssh://admin' is not a user name"),
        ("admin@[2001:db8::5", "is not [IPv6 address]"),
        ("admin@[host]:22", "is not [IPv6 address]"),
        ("admin@[::1]x", "is not [IPv6 address]"),
        ("admin@1:2:zz", "'1:2:zz' is not a host name"),
    ],
)
def test_refused_naming_what_is_wrong(value, names):
    with pytest.raises(InventoryError) as error:
        ssh_target(value)
    message = str(error.value)
    assert message.startswith("PGMON_HOST: ") and names in message and "user@host:port" in message


users = st.from_regex(r"[a-z_][a-z0-9_.-]{0,20}", fullmatch=True)
hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}\.){0,3}[a-z]{2,6}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
)


@given(user=st.none() | users, host=hosts, port=st.none() | st.integers(1, 65535))
def test_what_is_written_is_what_connects(user, host, port):
    written = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
    name, data = ssh_target(written)
    assert name == host
    assert data.get("ssh_user") == user and data.get("ssh_port") == port


@given(user=st.none() | users, address=st.ip_addresses(v=6).map(str), port=st.integers(1, 65535))
def test_ipv6_in_brackets(user, address, port):
    written = (f"{user}@" if user else "") + f"[{address}]:{port}"
    assert ssh_target(written) == (
        address,
        {**({"ssh_user": user} if user else {}), "ssh_port": port},
    )
